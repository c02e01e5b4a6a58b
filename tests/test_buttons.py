"""Buttons and status lights on gpiozero's MockFactory pins (no real time beyond a few ms)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from gpiozero.pins.mock import MockFactory
from pydantic import ValidationError

from appliance.devices.buttons import (
    ApplianceStatus,
    Buttons,
    StatusLights,
    make_pin_factory,
)
from appliance.devices.config import ButtonsConfig
from appliance.devices.loader import BackendError

CAPTURE, PRINT, FINISH = 17, 27, 22
HOLD = 0.05  # tests use a tiny hold; the config's floor is 0.5 s


class Actions:
    """ButtonActions that record calls; ``block`` keeps capture running until released."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.called = threading.Condition()
        self.block = threading.Event()
        self.block.set()

    def _record(self, name: str) -> None:
        with self.called:
            self.calls.append(name)
            self.called.notify_all()

    def capture(self) -> None:
        self._record("capture")
        self.block.wait(5)

    def print(self) -> None:
        self._record("print")

    def finish(self) -> None:
        self._record("finish")

    def wait_for(self, count: int, timeout: float = 5.0) -> bool:
        with self.called:
            return self.called.wait_for(lambda: len(self.calls) >= count, timeout)


@pytest.fixture
def factory() -> Iterator[MockFactory]:
    pin_factory = MockFactory()
    yield pin_factory
    pin_factory.reset()


@pytest.fixture
def actions() -> Actions:
    return Actions()


@pytest.fixture
def buttons(factory: MockFactory, actions: Actions) -> Iterator[Buttons]:
    with Buttons(
        actions,
        pin_factory=factory,
        capture_pin=CAPTURE,
        print_pin=PRINT,
        finish_pin=FINISH,
        bounce_time=0.0,
        hold_time=HOLD,
    ) as panel:
        yield panel


def press(factory: MockFactory, pin: int) -> None:
    factory.pin(pin).drive_low()  # pull-up: pressed = connected to ground
    factory.pin(pin).drive_high()


def test_capture_and_print_call_their_actions(
    factory: MockFactory, actions: Actions, buttons: Buttons
) -> None:
    press(factory, CAPTURE)
    assert actions.wait_for(1)
    assert buttons.wait_idle(5)
    press(factory, PRINT)
    assert actions.wait_for(2)
    assert actions.calls == ["capture", "print"]


def test_finish_needs_a_hold(factory: MockFactory, actions: Actions, buttons: Buttons) -> None:
    pin = factory.pin(FINISH)
    pin.drive_low()
    pin.drive_high()  # a brush: far shorter than the hold time
    time.sleep(HOLD * 4)  # well past the hold time: nothing may have fired
    assert actions.calls == []

    pin.drive_low()
    assert actions.wait_for(1, timeout=2), "holding finish did not wipe"
    pin.drive_high()
    assert actions.calls == ["finish"]
    time.sleep(HOLD * 3)
    assert actions.calls == ["finish"]  # one hold, one wipe (no hold_repeat)


def test_presses_while_an_action_runs_are_dropped(
    factory: MockFactory, actions: Actions, buttons: Buttons
) -> None:
    actions.block.clear()  # capture takes a while
    press(factory, CAPTURE)
    assert actions.wait_for(1)
    press(factory, CAPTURE)
    press(factory, CAPTURE)
    press(factory, PRINT)  # another action still goes through
    assert actions.wait_for(2)
    actions.block.set()
    assert buttons.wait_idle(5)
    assert actions.calls == ["capture", "print"]
    assert buttons.ignored == ["capture", "capture"]
    press(factory, CAPTURE)  # free again
    assert actions.wait_for(3)


def test_bounce_inside_the_debounce_time_is_one_press(factory: MockFactory) -> None:
    now = [100.0]
    actions = Actions()
    with Buttons(
        actions, pin_factory=factory, capture_pin=CAPTURE, bounce_time=0.05, clock=lambda: now[0]
    ) as panel:
        press(factory, CAPTURE)
        assert actions.wait_for(1)
        assert panel.wait_idle(5)
        now[0] += 0.01  # contact bounce
        press(factory, CAPTURE)
        assert panel.ignored == ["capture"]
        now[0] += 0.5  # a real second press
        press(factory, CAPTURE)
        assert actions.wait_for(2)
        assert panel.wait_idle(5)
    assert actions.calls == ["capture", "capture"]


def test_a_failing_action_does_not_stop_the_buttons(factory: MockFactory) -> None:
    done = threading.Event()

    class Flaky(Actions):
        def print(self) -> None:
            done.set()
            raise RuntimeError("printer on fire")

    actions = Flaky()
    with Buttons(actions, pin_factory=factory, print_pin=PRINT, bounce_time=0.0) as panel:
        press(factory, PRINT)
        assert done.wait(5)
        assert panel.wait_idle(5)
        done.clear()
        press(factory, PRINT)
        assert done.wait(5)


def test_close_releases_the_pins(factory: MockFactory, actions: Actions) -> None:
    panel = Buttons(actions, pin_factory=factory, capture_pin=CAPTURE, bounce_time=0.0)
    panel.close()
    press(factory, CAPTURE)
    time.sleep(0.05)
    assert actions.calls == []
    again = Buttons(actions, pin_factory=factory, capture_pin=CAPTURE)  # pin is free again
    again.close()


# --- lights


LEDS = {"ready": 5, "busy": 6, "attention": 13, "error": 19}


@pytest.fixture
def lights(factory: MockFactory) -> Iterator[StatusLights]:
    config = ButtonsConfig()
    with StatusLights.from_config(config, pin_factory=factory) as status_lights:
        yield status_lights


def lit(factory: MockFactory) -> dict[str, bool]:
    return {name: bool(factory.pin(pin).state) for name, pin in LEDS.items()}


def toggles(factory: MockFactory, pin: int) -> int:
    return len(factory.pin(pin).states) - 1


def wait_until(condition: Callable[[], bool], timeout: float = 3.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.01)
    return False


def test_lights_follow_the_status(factory: MockFactory, lights: StatusLights) -> None:
    assert lit(factory) == dict.fromkeys(LEDS, False)
    lights.show(ApplianceStatus.READY)
    assert lit(factory) == {"ready": True, "busy": False, "attention": False, "error": False}
    lights.show("error")
    assert lit(factory) == {"ready": False, "busy": False, "attention": False, "error": True}

    lights.show(ApplianceStatus.BUSY)  # blinks
    assert not factory.pin(LEDS["error"]).state
    start = toggles(factory, LEDS["busy"])
    assert wait_until(lambda: toggles(factory, LEDS["busy"]) >= start + 3), "busy LED not blinking"
    lights.show(ApplianceStatus.READY)
    assert lit(factory) == {"ready": True, "busy": False, "attention": False, "error": False}
    stopped = toggles(factory, LEDS["busy"])
    time.sleep(0.5)
    assert toggles(factory, LEDS["busy"]) == stopped  # the blink thread stopped
    lights.off()
    assert lit(factory) == dict.fromkeys(LEDS, False)


def test_rgb_led(factory: MockFactory) -> None:
    with StatusLights(pin_factory=factory, rgb_pins=(23, 24, 25)) as status_lights:
        status_lights.show(ApplianceStatus.ERROR)
        assert [factory.pin(p).state for p in (23, 24, 25)] == [1, 0, 0]
        status_lights.show(ApplianceStatus.READY)
        assert [factory.pin(p).state for p in (23, 24, 25)] == [0, 1, 0]
        status_lights.show(ApplianceStatus.ATTENTION)
        assert wait_until(lambda: toggles(factory, 23) >= 3)  # amber blinking


def test_active_low_leds(factory: MockFactory) -> None:
    with StatusLights(pin_factory=factory, ready_pin=5, active_high=False) as status_lights:
        assert factory.pin(5).state == 1  # off = high for an LED wired to 3V3
        status_lights.show("ready")
        assert factory.pin(5).state == 0


# --- config and factory ---------------------------------------------------------------------------


def test_from_config_wires_the_configured_pins(factory: MockFactory, actions: Actions) -> None:
    config = ButtonsConfig(capture_pin="GPIO5", print_pin=None, finish_pin=6, led_ready_pin=None,
                           led_busy_pin=None, led_attention_pin=None, led_error_pin=None,
                           finish_hold_s=0.5)  # fmt: skip
    with Buttons.from_config(config, actions, pin_factory=factory):
        press(factory, 5)
        assert actions.wait_for(1)
        assert actions.calls == ["capture"]


def test_config_rejects_shared_and_bogus_pins() -> None:
    with pytest.raises(ValidationError, match="assigned twice"):
        ButtonsConfig(capture_pin=17, led_ready_pin="GPIO17")
    with pytest.raises(ValidationError, match="does not exist"):
        ButtonsConfig(capture_pin=99)
    with pytest.raises(ValidationError, match="not a pin"):
        ButtonsConfig(capture_pin="pin seventeen")
    with pytest.raises(ValidationError, match=r"greater than or equal to 0\.5"):
        ButtonsConfig(finish_hold_s=0.1)  # a brush must not wipe


def test_pin_factory_by_name() -> None:
    made: Any = make_pin_factory("mock")
    try:
        assert isinstance(made, MockFactory)
    finally:
        made.close()
    with pytest.raises(BackendError, match=r'buttons\.pin_factory = "gpio"'):
        make_pin_factory("gpio")
