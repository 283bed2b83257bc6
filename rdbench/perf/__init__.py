"""Speed, memory and fidelity tooling: profile, the reference mode (the authors' procedure), memory, parity
fingerprints. May import the engine, records, models, data and metrics; never bench, report or cli."""
