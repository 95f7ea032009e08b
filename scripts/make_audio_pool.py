"""Generate the initial audio-caption pool: short descriptions of sound recordings.

Writes ``worker/data/audio_caption_pool.txt``: distinct captions (under 20 words) built from
the sound sources, actions and settings below, in a fixed ``random.Random(2501)`` order.
Deterministic: re-running gives a byte-identical file. Run from the repository root::

    python scripts/make_audio_pool.py
"""

from __future__ import annotations

import itertools
import random
from pathlib import Path

OUT_PATH = Path(__file__).resolve().parent.parent / "worker" / "data" / "audio_caption_pool.txt"

# source -> what it does (as a verb phrase)
SOURCES: dict[str, list[str]] = {
    "a dog": ["barks", "barks repeatedly", "growls", "whines", "pants"],
    "a cat": ["meows", "purrs", "hisses"],
    "birds": ["chirp", "sing", "call to each other"],
    "a rooster": ["crows"],
    "a cow": ["moos"],
    "a horse": ["neighs", "trots on a hard road"],
    "frogs": ["croak"],
    "insects": ["buzz", "chirp loudly"],
    "a baby": ["cries", "laughs", "babbles"],
    "a man": ["speaks", "laughs", "coughs", "whistles", "shouts", "sings"],
    "a woman": ["speaks", "laughs", "sings", "whispers", "shouts"],
    "children": ["play and shout", "laugh", "talk"],
    "a crowd": ["cheers", "applauds", "murmurs", "claps"],
    "people": ["talk", "chatter", "walk by"],
    "rain": ["falls", "patters on a roof", "pours down"],
    "thunder": ["rumbles", "cracks"],
    "the wind": ["blows", "howls", "gusts"],
    "waves": ["crash", "lap against the shore"],
    "a stream": ["trickles", "flows"],
    "water": ["runs from a tap", "drips", "splashes", "boils"],
    "a fire": ["crackles"],
    "a car": ["passes by", "starts", "honks", "accelerates", "idles"],
    "a truck": ["drives past", "reverses with a beeping alarm"],
    "a motorcycle": ["revs", "speeds by"],
    "a train": ["passes", "blows its horn", "rattles over the tracks"],
    "an airplane": ["flies overhead", "takes off"],
    "a helicopter": ["hovers", "flies past"],
    "a siren": ["wails", "passes by"],
    "an engine": ["hums", "runs", "sputters"],
    "a door": ["creaks", "slams", "opens and closes"],
    "footsteps": ["approach", "echo", "crunch on gravel"],
    "a clock": ["ticks", "chimes"],
    "a bell": ["rings", "tolls"],
    "a phone": ["rings", "vibrates"],
    "an alarm": ["beeps", "goes off"],
    "a piano": ["plays a slow melody", "plays chords"],
    "a guitar": ["is strummed", "plays a tune"],
    "drums": ["play a steady beat", "roll"],
    "a violin": ["plays a melody"],
    "music": ["plays softly", "plays loudly"],
    "a drill": ["whirs", "drills into wood"],
    "a hammer": ["bangs on metal", "taps"],
    "a saw": ["cuts through wood"],
    "a vacuum cleaner": ["runs"],
    "a blender": ["whirs"],
    "a keyboard": ["is typed on"],
    "paper": ["rustles", "is crumpled"],
    "dishes": ["clatter"],
    "glass": ["shatters", "clinks"],
    "a fan": ["hums"],
}
SETTINGS = ["", "in the distance", "nearby", "outdoors", "indoors", "in a quiet room", "on a busy street",
            "in a park", "in a forest", "at night", "in the background", "in a large hall", "in a kitchen",
            "in an office", "at the beach", "in the rain"]
FORMS = [
    "{S} {v}{p}.",
    "The sound of {s} that {v}{p}.",
    "{S} {v}{p} while {s2} {v2}.",
    "A recording of {s} that {v}{p}.",
    "{S} {v}{p}, then silence.",
]


def sentence(rng: random.Random) -> str:
    (s, verbs), (s2, verbs2) = rng.sample(list(SOURCES.items()), 2)
    place = rng.choice(SETTINGS)
    text = rng.choice(FORMS).format(s=s, S=s[0].upper() + s[1:], v=rng.choice(verbs), p=f" {place}" if place else "",
                                    s2=s2, v2=rng.choice(verbs2))
    return text


def main() -> None:
    rng = random.Random(2501)
    seen: dict[str, None] = {}
    for _ in itertools.repeat(None, 20_000):
        text = sentence(rng)
        if len(text.split()) < 20:
            seen.setdefault(text, None)
        if len(seen) >= 3000:
            break
    OUT_PATH.write_text("\n".join(seen) + "\n", "utf-8")
    print(f"wrote {len(seen)} captions")


if __name__ == "__main__":
    main()
