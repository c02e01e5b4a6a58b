"""Studio appliance: ID photos and portraits with zero retention."""

__version__ = "0.1.0"
