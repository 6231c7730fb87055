"""Kyutai streaming STT on moshi: the only package that imports torch and moshi."""
