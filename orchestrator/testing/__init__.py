"""Fakes that ship with testbed (after labgrid): a host, a lab network, a platform, a workload and a
benchmark that need no root, no runtime and no network beyond loopback, so the runner's logic is
tested fast. Importing orchestrator.testing.fakes registers the kinds `fake`, `fake-echo` and
`fake-load`; the registries never discover this package on their own."""
