"""Simulated help buttons (一键呼叫): presses, heartbeats, last will."""

from __future__ import annotations

from devices.simulators.device import SimulatedDevice


class SimulatedButton(SimulatedDevice):
    kind = "buttons"

    def __init__(self, device_id: str, *, battery: int = 90, **kwargs) -> None:
        super().__init__(device_id, **kwargs)
        self.battery = battery

    def press(self, action: str = "single") -> dict:
        payload = {
            "seq": self.next_seq(),
            "action": action,
            "battery": self.battery,
            "ts": self.timestamp(),
        }
        self.publish("events", payload)
        return payload

    def heartbeat(self, **fields) -> None:
        self.status("online", battery=self.battery, **fields)
