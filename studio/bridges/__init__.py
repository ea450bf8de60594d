"""Front-ends for DAWs: OSC control surface, MIDI in/out, local playback."""
