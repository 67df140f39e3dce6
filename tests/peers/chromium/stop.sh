#!/usr/bin/env bash
# Nothing runs for chromium (each test starts and stops its own chromedriver): nothing to stop.
exit 0
