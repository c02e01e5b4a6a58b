"""Pure functions on bytes and arrays: decode, encode, geometry, layout."""
