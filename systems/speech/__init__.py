"""Speech-enhancement systems: DSP baselines (dsp.py) and learned models."""
