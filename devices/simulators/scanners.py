"""Simulated QR scanners at stall gates and in butlers' hands."""

from __future__ import annotations

from devices.simulators.device import SimulatedDevice


class SimulatedScanner(SimulatedDevice):
    kind = "scanners"

    def scan(self, code: str, purpose: str = "inspect") -> dict:
        payload = {"seq": self.next_seq(), "code": code, "purpose": purpose, "ts": self.timestamp()}
        self.publish("scans", payload)
        return payload
