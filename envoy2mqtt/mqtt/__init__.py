"""Topics, the publisher (aiomqtt, Last Will, reconnect) and Home Assistant discovery."""
