"""Ways photos arrive besides the camera and the web uploads (the hot folder)."""
