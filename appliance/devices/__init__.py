"""Hardware the appliance drives: camera, buttons and lights, printer.

Each device is a small Protocol with one backend per file and a fake beside the real ones,
chosen by config (:mod:`appliance.devices.config`). Backend modules import their hardware
libraries (picamera2, cv2, gpiozero pin libraries, the CUPS tools) only when a device is
opened, so importing this package probes nothing and a laptop runs on the fakes.
"""
