//! Realism of the synthetic extract: tests arrive in the next commit.
