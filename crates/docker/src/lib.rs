//! Docker Swarm watcher and notifier (issue 3).
