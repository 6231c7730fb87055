"""The deterministic tone-code engine and its code (tests, load benchmarks, `stt tones`)."""
