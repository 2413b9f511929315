"""The results file: its schema and validator, the phase timer, the recorder that writes it and
the reader that loads it back."""
