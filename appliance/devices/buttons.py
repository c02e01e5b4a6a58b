"""The booth's physical buttons and status lights (gpiozero, pin factory injected).

Three buttons call the same actions as the tablet: **capture** and **print** on press,
**finish** (which wipes the session) only after it has been held for ``hold_time`` (2 s by
default), so a brush or a lean cannot wipe anything; a short press of finish does nothing.
Each action runs on its own worker thread, so a slow capture never blocks the pin callbacks,
and presses of an action that is still running, or that come within the debounce time of the
previous one, are ignored instead of queuing up.

The lights follow one :class:`ApplianceStatus`: separate LEDs (ready, busy, attention,
error) and/or one RGB LED. Busy and attention blink; ready and error are steady.

gpiozero is imported only when the devices are built; pins come from the injected
``pin_factory`` (``MockFactory`` on a laptop, in the demo and in tests).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from enum import StrEnum
from types import TracebackType
from typing import Any, Protocol

from appliance.devices.config import ButtonsConfig
from appliance.devices.loader import resolve_backend

logger = logging.getLogger(__name__)

PIN_FACTORIES: dict[str, str] = {
    "mock": "gpiozero.pins.mock:MockFactory",
    "lgpio": "gpiozero.pins.lgpio:LGPIOFactory",
    "rpigpio": "gpiozero.pins.rpigpio:RPiGPIOFactory",
    "pigpio": "gpiozero.pins.pigpio:PiGPIOFactory",
    "native": "gpiozero.pins.native:NativeFactory",
}


class ApplianceStatus(StrEnum):
    READY = "ready"  # waiting for a customer
    BUSY = "busy"  # capturing, processing, printing
    ATTENTION = "attention"  # the operator should look (printer paused, photo needs a retake)
    ERROR = "error"  # something is broken (camera unavailable)


# (LED colour for an RGB LED, blink on/off seconds or None for steady)
_LOOK: dict[ApplianceStatus, tuple[tuple[int, int, int], tuple[float, float] | None]] = {
    ApplianceStatus.READY: ((0, 1, 0), None),
    ApplianceStatus.BUSY: ((0, 0, 1), (0.2, 0.2)),
    ApplianceStatus.ATTENTION: ((1, 1, 0), (0.5, 0.5)),
    ApplianceStatus.ERROR: ((1, 0, 0), None),
}


class ButtonActions(Protocol):
    """What the buttons do; the session layer supplies it (the tablet calls the same)."""

    def capture(self) -> None: ...

    def print(self) -> None: ...

    def finish(self) -> None: ...


def make_pin_factory(name: str) -> Any:
    """A gpiozero pin factory by config name ("mock", "lgpio", …) or "module:Class"."""
    return resolve_backend("buttons.pin_factory", name, PIN_FACTORIES)()


class Buttons:
    """Capture, print and finish buttons wired to :class:`ButtonActions`."""

    def __init__(
        self,
        actions: ButtonActions,
        *,
        pin_factory: Any,
        capture_pin: int | str | None = None,
        print_pin: int | str | None = None,
        finish_pin: int | str | None = None,
        pull_up: bool = True,
        bounce_time: float = 0.05,
        hold_time: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        from gpiozero import Button

        self._actions = actions
        self._bounce = bounce_time
        self._clock = clock
        self._lock = threading.Lock()
        self._running: set[str] = set()
        self._workers: list[threading.Thread] = []
        self._last_press: dict[str, float] = {}
        self.dispatched: list[str] = []  # actions started, in order
        self.ignored: list[str] = []  # presses dropped (still running, or a bounce)
        self._buttons: list[Any] = []
        gpio_bounce = bounce_time or None  # gpiozero wants None, not 0, for "no debounce"
        try:
            if capture_pin is not None:
                button = Button(
                    capture_pin, pull_up=pull_up, bounce_time=gpio_bounce, pin_factory=pin_factory
                )
                button.when_pressed = lambda: self._trigger("capture")
                self._buttons.append(button)
            if print_pin is not None:
                button = Button(
                    print_pin, pull_up=pull_up, bounce_time=gpio_bounce, pin_factory=pin_factory
                )
                button.when_pressed = lambda: self._trigger("print")
                self._buttons.append(button)
            if finish_pin is not None:
                button = Button(
                    finish_pin,
                    pull_up=pull_up,
                    bounce_time=gpio_bounce,
                    hold_time=hold_time,
                    hold_repeat=False,
                    pin_factory=pin_factory,
                )
                # Only a hold wipes; there is deliberately no when_pressed.
                button.when_held = lambda: self._trigger("finish")
                self._buttons.append(button)
        except Exception:
            self.close()
            raise

    @classmethod
    def from_config(
        cls, config: ButtonsConfig, actions: ButtonActions, *, pin_factory: Any
    ) -> Buttons:
        return cls(
            actions,
            pin_factory=pin_factory,
            capture_pin=config.capture_pin,
            print_pin=config.print_pin,
            finish_pin=config.finish_pin,
            pull_up=config.pull_up,
            bounce_time=config.bounce_time_s,
            hold_time=config.finish_hold_s,
        )

    def _trigger(self, name: str) -> None:
        now = self._clock()
        with self._lock:
            last = self._last_press.get(name)
            self._last_press[name] = now
            if name in self._running or (last is not None and now - last < self._bounce):
                self.ignored.append(name)
                return
            self._running.add(name)
            self.dispatched.append(name)
            worker = threading.Thread(
                target=self._run, args=(name,), name=f"button-{name}", daemon=True
            )
            self._workers = [w for w in self._workers if w.is_alive()] + [worker]
        worker.start()

    def _run(self, name: str) -> None:
        action: Callable[[], None] = getattr(self._actions, name)
        try:
            action()
        except Exception as error:
            # Type only: a message could carry customer details into the journal.
            logger.error("button action %s failed: %s", name, type(error).__name__)
        finally:
            with self._lock:
                self._running.discard(name)

    def wait_idle(self, timeout: float) -> bool:
        """Wait for running actions to finish; True when none is left."""
        deadline = time.monotonic() + timeout
        with self._lock:
            workers = list(self._workers)
        for worker in workers:
            worker.join(max(0.0, deadline - time.monotonic()))
        return not any(worker.is_alive() for worker in workers)

    def close(self) -> None:
        for button in self._buttons:
            button.close()
        self._buttons = []
        self.wait_idle(5.0)

    def __enter__(self) -> Buttons:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class StatusLights:
    """LEDs that show one :class:`ApplianceStatus` at a time."""

    def __init__(
        self,
        *,
        pin_factory: Any,
        ready_pin: int | str | None = None,
        busy_pin: int | str | None = None,
        attention_pin: int | str | None = None,
        error_pin: int | str | None = None,
        rgb_pins: tuple[int | str, int | str, int | str] | None = None,
        active_high: bool = True,
    ) -> None:
        from gpiozero import LED, RGBLED

        self._lock = threading.Lock()
        self._leds: dict[ApplianceStatus, Any] = {}
        self._rgb: Any = None
        self.status: ApplianceStatus | None = None
        pins = {
            ApplianceStatus.READY: ready_pin,
            ApplianceStatus.BUSY: busy_pin,
            ApplianceStatus.ATTENTION: attention_pin,
            ApplianceStatus.ERROR: error_pin,
        }
        try:
            for status, pin in pins.items():
                if pin is not None:
                    self._leds[status] = LED(
                        pin, active_high=active_high, initial_value=False, pin_factory=pin_factory
                    )
            if rgb_pins is not None:
                red, green, blue = rgb_pins
                # pwm=False: plain on/off colours work on every pin factory.
                self._rgb = RGBLED(
                    red, green, blue, active_high=active_high, pwm=False, pin_factory=pin_factory
                )
        except Exception:
            self.close()
            raise

    @classmethod
    def from_config(cls, config: ButtonsConfig, *, pin_factory: Any) -> StatusLights:
        return cls(
            pin_factory=pin_factory,
            ready_pin=config.led_ready_pin,
            busy_pin=config.led_busy_pin,
            attention_pin=config.led_attention_pin,
            error_pin=config.led_error_pin,
            rgb_pins=config.rgb_led_pins,
            active_high=config.led_active_high,
        )

    def show(self, status: ApplianceStatus | str) -> None:
        status = ApplianceStatus(status)
        colour, blink = _LOOK[status]
        with self._lock:
            if status == self.status:
                return  # restarting a blink would make it stutter
            self.status = status
            for other, led in self._leds.items():
                if other != status:
                    led.off()
            led = self._leds.get(status)
            if led is not None:
                if blink is None:
                    led.on()
                else:
                    led.blink(on_time=blink[0], off_time=blink[1], background=True)
            if self._rgb is not None:
                if blink is None:
                    self._rgb.color = colour
                else:
                    self._rgb.blink(
                        on_time=blink[0], off_time=blink[1], on_color=colour, background=True
                    )

    def off(self) -> None:
        with self._lock:
            self.status = None
            for led in self._leds.values():
                led.off()
            if self._rgb is not None:
                self._rgb.off()

    def close(self) -> None:
        with self._lock:
            devices = [*self._leds.values(), *([self._rgb] if self._rgb is not None else [])]
            self._leds = {}
            self._rgb = None
            self.status = None
        for device in devices:
            device.close()

    def __enter__(self) -> StatusLights:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
