"""Archive jobs: one engine (manifest, journal, chunked reading, outputs) for predict, embed and match."""
