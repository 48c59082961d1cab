"""Virtualisation through libvirt: connection and daemons, accelerator probe, domain XML,
console parsing, domain lifecycle (ledger-owned) and `testbed doctor` checks."""
