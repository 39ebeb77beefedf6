//! The executor: runs rendered steps as child processes or requests. (In progress.)
