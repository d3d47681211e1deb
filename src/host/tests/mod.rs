//! Native tests of the worker host.
