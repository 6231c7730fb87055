"""Tools that talk to a server from outside: client, stress, samples, WER, a server process."""
