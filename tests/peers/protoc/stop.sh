#!/usr/bin/env bash
# Nothing runs for protoc: nothing to stop.
exit 0
