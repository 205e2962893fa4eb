"""The lab: an offline twin of the multi-region private API stack."""
