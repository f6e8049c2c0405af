"""Supply chain: the SBOM of a release (sbom) and its match against an OSV database (scan)."""
