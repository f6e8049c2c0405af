"""The agent: one small long-running process per $HEADWAY_HOME that supervises instances,
owns HAProxy, retires warm releases and finishes deploys whose CLI died."""
