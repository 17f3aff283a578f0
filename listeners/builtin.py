"""The built-in panel: normal hearing plus the Bisgaard et al. (2010) standard audiograms.

Thresholds (dB HL, both ears) are N1-N7 (flat and moderately sloping) and S1-S3 (steeply
sloping) from Bisgaard, Vlaming & Dahlquist, Trends in Amplification 14(2), 2010, as used by
IEC 60118-15; they are stored in Clarity's listeners.json format in data/builtin.json.
"""

from __future__ import annotations

from pathlib import Path

from harness.listener import Panel, load_listener_file

DATA = Path(__file__).parent / "data" / "builtin.json"


def builtin_panel() -> Panel:
    """NH, N1-N7 and S1-S3, in that order."""
    panel = load_listener_file(DATA)
    return Panel(name="builtin", listeners=panel.listeners, source=str(DATA))
