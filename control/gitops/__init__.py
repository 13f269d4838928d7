"""Git sources at control: the pure reading and planning of a commit's files (`documents`,
`plan`), and the one module that runs Debian's `git` (`repo`)."""
