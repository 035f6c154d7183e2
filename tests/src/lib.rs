//! hookgate's integration and end-to-end tests live in `tests/`; see the README.
