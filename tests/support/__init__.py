"""The suite's real-parts harness, shared by the tests and `bench/`.

ci          what CI provides: a missing real part fails there and skips elsewhere
processes   free loopback ports, waiting, stopping a child by its pid
engines     a private dockerd (own socket, data root, address pool)
registry    Debian's docker-registry on a loopback port
images      the busybox test image, imported and pushed
enforcer    `edge-enforcer run` as a real process, and its CLI
livedaemon  the enforcer's daemon in this process, fed what control would send
control     `edge-control serve` as a real process, and sites driven by the real SyncClient
apps        application documents for the behaviour tests
devices     real device nodes made for a test (loop devices) and read back from /sys
users       a piece of a test run as an unprivileged user (root passes permission checks)
browser     Debian's headless chromium through chromedriver and Selenium (the web console)
"""
