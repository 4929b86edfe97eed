# Hook script of the "Linux basics" demo: runs on the lab with the event
# (suspend, resume or delete) as its argument, and keeps a diary of them.
echo "$(date -u +%Y-%m-%dT%H:%M:%SZ) $1" >> ~/.lab-events
