//! Windows guests: ntoskrnl discovery, PDB GUID to symbol table, analyses.
//!
//! Not yet implemented. No Windows guest can run on the machines this project is built on;
//! work here will build synthetic images with the real layouts of the Volatility 3 symbol
//! tables of four real ntoskrnl builds.
