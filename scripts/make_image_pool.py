"""Generate the initial image-caption pool used by the MILS optimizer.

Writes ``worker/data/image_caption_pool.txt``: about 5,000 distinct English
image captions, one per line (UTF-8), built from the vocabularies and caption
templates in this file and ordered by a fixed ``random.Random(2501)`` shuffle.
The output is deterministic, so re-running gives a byte-identical file.

Re-run from the repository root with::

    python scripts/make_image_pool.py

Standard library only.
"""

from __future__ import annotations

import random
import re
import sys
from pathlib import Path

SEED = 2501
TARGET = 5000
MIN_WORDS = 4
MAX_WORDS = 16

OUT_PATH = Path(__file__).resolve().parent.parent / "worker" / "data" / "image_caption_pool.txt"

# ---------------------------------------------------------------------------
# Scene groups: name -> (is_a_place_people_can_be_in, [scene phrases]).
# ---------------------------------------------------------------------------
SCENE_GROUPS: dict[str, tuple[bool, list[str]]] = {
    "table": (False, ["on a wooden table", "on a kitchen counter", "on a desk", "on a marble countertop",
                      "on a shelf", "on a windowsill"]),
    "food_table": (False, ["on a wooden table", "on a kitchen counter", "on a marble countertop",
                           "on a picnic blanket", "on a dining table"]),
    "desk": (False, ["on a desk"]),
    "dining": (True, ["in a dining room", "in a kitchen", "in a restaurant"]),
    "living": (True, ["in a living room", "in a hotel room", "next to a window", "in a furniture store"]),
    "studio": (False, ["against a black background", "on a white background", "on a gray background",
                       "in a photo studio"]),
    "plate": (False, ["on a white plate", "on a wooden cutting board"]),
    "bakery": (False, ["in a bakery display case", "on a cooling rack"]),
    "cafe": (True, ["in a cafe", "at a restaurant", "at an outdoor cafe"]),
    "market": (True, ["at a farmers market", "at a grocery store", "at a market stall"]),
    "home": (True, ["in a living room", "in a bedroom", "in a hotel room", "next to a window"]),
    "kitchen": (True, ["in a kitchen", "in a restaurant kitchen"]),
    "office": (True, ["in an office", "in a classroom", "in a library"]),
    "laundry": (True, ["in a laundry room", "in a basement"]),
    "bedroom": (True, ["in a bedroom", "in a hotel room"]),
    "garage": (True, ["in a garage", "in a workshop"]),
    "bathroom": (True, ["in a bathroom", "in a small bathroom", "in a hotel bathroom", "in a public restroom"]),
    "home_spot": (False, ["on a couch", "on a bed", "on a soft blanket", "on a wooden floor", "on a rug",
                          "on a windowsill"]),
    "closet": (False, ["hanging in a closet", "on a clothing rack", "in a store window", "on a bed"]),
    "street": (True, ["on a city street", "on a sidewalk", "in front of a building", "in a small town",
                      "in a city square"]),
    "road": (True, ["on a highway", "on a busy road", "on a country road", "at an intersection",
                    "in a parking lot"]),
    "park": (True, ["on a grassy field", "in a park", "in a garden", "in a backyard", "on a dirt path",
                    "on a hillside"]),
    "beach": (True, ["on a sandy beach", "near the shore"]),
    "forest": (True, ["in a forest", "in tall grass", "near a river", "on a rocky hillside"]),
    "snow": (True, ["in the snow", "on a snowy slope"]),
    "desert": (True, ["in the desert", "on a sand dune"]),
    "farm": (True, ["in a pasture", "on a farm", "in a barn", "behind a wooden fence", "in a muddy field"]),
    "savanna": (True, ["in the wild", "on the savanna", "near a watering hole", "in tall grass"]),
    "zoo": (True, ["at a zoo", "in a zoo enclosure", "in the wild"]),
    "water": (True, ["on a lake", "in the ocean", "in a harbor", "on a calm river", "at a marina"]),
    "underwater": (False, ["underwater", "in an aquarium", "near a coral reef"]),
    "pond": (False, ["in a pond", "in a fish tank", "in a glass bowl"]),
    "open_sea": (False, ["in the ocean", "in open water", "near the surface of the water"]),
    "field": (True, ["on a grassy field", "in a meadow", "on a hillside"]),
    "small_spot": (False, ["on a green leaf", "on a flower", "on a tree branch", "on the ground", "on a rock"]),
    "perch": (False, ["on a tree branch", "on a fence post", "on a power line", "on a rooftop", "in a nest"]),
    "sky": (False, ["in the night sky", "over a mountain range", "over the ocean", "over a city skyline",
                    "above a dark forest", "against a black background"]),
    "day_sky": (False, ["in a clear blue sky", "above the clouds", "over the ocean", "over a mountain range"]),
    "weather": (False, ["over a city skyline", "over the ocean", "over a mountain range", "above a dark forest",
                        "over an open field"]),
    "air": (True, ["in a clear blue sky", "above the clouds", "on a runway", "at an airport",
                   "over a city skyline", "over the ocean"]),
    "space": (False, ["in outer space", "on a launch pad", "orbiting the Earth", "above the Earth",
                      "against a black background"]),
    "surface": (True, ["on the surface of the moon", "on a rocky desert plain"]),
    "rail": (True, ["at a train station", "on the tracks", "crossing a bridge", "in a city center",
                    "on a railway platform"]),
    "sport": (True, ["on a sports field", "in a gym", "on a wooden floor", "in a locker room"]),
    "skate": (True, ["at a skate park", "on a concrete ramp"]),
    "tennis": (True, ["on a tennis court"]),
    "baseball": (True, ["on a baseball field"]),
    "soccer": (True, ["on a soccer field"]),
    "court": (True, ["on a basketball court"]),
    "golf": (True, ["on a golf course"]),
    "stage": (True, ["on a stage", "in a music studio", "in a music store", "at a concert"]),
    "screen": (False, ["on a computer screen", "on a light box", "on a hospital monitor"]),
    "hospital": (True, ["in a hospital room", "in a doctor's office", "in a laboratory"]),
    "tray": (False, ["on a metal tray", "on a doctor's desk"]),
    "paper": (False, ["on a wooden table", "on a desk", "pinned to a corkboard", "on a clipboard"]),
    "landscape": (True, ["under a cloudy sky", "at sunset", "on a sunny day", "in winter", "at dawn",
                         "under a starry sky", "in the fog"]),
    "town": (True, ["in a small town", "by the sea", "in the countryside", "on a hill", "in the city",
                    "on a quiet street"]),
    "meadow": (True, ["in a meadow", "in a flower bed", "in a garden"]),
    "vase": (False, ["in a vase", "in a glass jar"]),
}

# Groups whose scenes can take a time-of-day suffix ("... at night.").
TIME_GROUPS = {"street", "road", "park", "beach", "water", "rail", "farm", "town", "savanna", "forest",
               "snow", "air"}
TIMES = ["at night", "at sunset", "on a rainy day", "in the morning", "at dusk"]

# Groups that make a plain backdrop rather than a place (kept out of "person doing X" captions).
OUTDOOR_GROUPS = {"street", "road", "park", "beach", "forest", "snow", "desert", "farm", "savanna", "water",
                  "rail", "town", "air", "landscape", "meadow"}

# ---------------------------------------------------------------------------
# Adjectives, actions, photo styles.
# ---------------------------------------------------------------------------
COLORS = ["red", "blue", "green", "yellow", "white", "black", "brown", "gray", "pink", "purple", "orange",
          "silver"]

PET_ADJ = ["fluffy", "cute", "small", "young", "little", "curious", "playful", "happy"]
ANIMAL_ADJ = ["young", "large", "small", "curious", "adult", "majestic", "wild"]
FARM_ADJ = ["young", "large", "small", "curious", "muddy", "brown"]
BIRD_ADJ = ["small", "large", "young", "curious", "wild"]
PERSON_ADJ = ["young", "smiling", "happy", "tall", "tired"]
FOOD_ADJ = ["delicious", "homemade", "half-eaten", "fresh", "large", "small", "tasty"]
FRUIT_ADJ = ["ripe", "fresh", "large", "small", "juicy"]
VEG_ADJ = ["fresh", "raw", "organic", "large", "small"]
HOT_DRINK_ADJ = ["hot", "steaming", "freshly brewed", "large", "small"]
COLD_DRINK_ADJ = ["cold", "chilled", "refreshing", "half-empty", "tall", "large"]
SKY_ADJ = ["bright", "distant", "glowing", "faint", "beautiful"]
LAND_ADJ = ["beautiful", "distant", "large", "small", "peaceful"]
BUILDING_ADJ = ["old", "tall", "abandoned", "historic", "small", "large", "modern", "beautiful"]
PAPER_ADJ = ["old", "crumpled", "faded", "folded", "torn", "wrinkled"]
SCAN_ADJ = ["detailed", "blurry", "grainy", "high-resolution", "grayscale", "low-quality"]

PET_ACTIONS = ["sitting", "lying down", "sleeping", "looking at the camera", "playing", "resting", "yawning",
               "standing", "curled up", "stretching", "looking up"]
BABY_ACTIONS = ["sitting", "sleeping", "lying down", "smiling", "crawling", "laughing", "looking at the camera",
                "playing", "yawning"]
FARM_ACTIONS = ["standing", "grazing", "eating grass", "lying down", "walking", "resting", "looking at the camera"]
WILD_ACTIONS = ["walking", "standing", "resting", "lying down", "eating", "looking at the camera", "sleeping",
                "running"]
BIRD_ACTIONS = ["perched", "sitting", "standing", "resting", "looking at the camera", "spreading its wings"]
WATER_ACTIONS = ["swimming", "resting", "floating"]
SMALL_ACTIONS = ["resting", "sitting", "crawling"]
PERSON_ACTIONS = ["standing", "sitting", "smiling", "walking", "looking at the camera", "talking on a phone",
                  "laughing", "waving", "posing for a photo", "reading a book", "drinking coffee",
                  "taking a photo", "wearing a hat", "wearing sunglasses", "carrying a backpack",
                  "holding an umbrella", "eating lunch"]
ASTRONAUT_ACTIONS = ["floating", "standing", "walking", "waving at the camera", "posing for a photo",
                     "looking at the camera", "holding a flag", "working"]

STYLES = ["A close-up photo of", "A black and white photo of", "A blurry photo of", "A photo of",
          "A cropped photo of", "A bright photo of", "A dark photo of", "A low-resolution photo of",
          "A vintage photo of", "A close-up of", "A painting of", "A sketch of"]
OVERHEAD = ["An overhead view of", "A top-down view of"]

PEOPLE = ["man", "woman", "child", "boy", "girl", "young woman", "young man", "old man", "elderly woman",
          "teenager", "person", "tourist"]
MEDICAL_PEOPLE = ["doctor", "nurse"]
ADULTS = ["man", "woman", "young woman", "young man", "old man", "elderly woman", "person"]

# ---------------------------------------------------------------------------
# Object categories. Entries: "name", "name|plural", "name!u" (unique: "the
# moon"), "name!p" (plural-only noun such as "coins").
# ---------------------------------------------------------------------------
CATEGORIES: dict[str, dict] = {
    "pet": dict(
        objects="cat; tabby cat; black cat; kitten; dog; puppy|puppies; golden retriever; Labrador; "
                "German shepherd; poodle; beagle; bulldog; Chihuahua; husky|huskies; hamster; rabbit; guinea pig",
        scenes=["home_spot", "home", "park"], adjs=PET_ADJ, actions=PET_ACTIONS,
        verbs=["petting", "holding", "playing with", "cuddling"], collectives=["A group of"]),
    "baby": dict(
        objects="baby|babies; toddler",
        scenes=["home_spot", "home", "park"], adjs=["smiling", "happy", "little", "cute", "small"],
        actions=BABY_ACTIONS, verbs=["holding", "feeding", "carrying"], collectives=["A group of"]),
    "farm": dict(
        objects="horse; cow; sheep|sheep; goat; pig; chicken; rooster; donkey; duck; pony|ponies; llama; "
                "calf|calves; goose|geese; alpaca",
        scenes=["farm", "field"], adjs=FARM_ADJ, actions=FARM_ACTIONS,
        verbs=["feeding", "petting"], collectives=["A group of"]),
    "savanna": dict(
        objects="elephant; zebra; giraffe; lion; rhino; hippo; cheetah",
        scenes=["savanna", "zoo"], adjs=ANIMAL_ADJ, actions=WILD_ACTIONS,
        verbs=["watching", "photographing"], collectives=["A group of"]),
    "woodland": dict(
        objects="bear; deer|deer; fox; wolf|wolves; squirrel; raccoon; hedgehog",
        scenes=["forest", "park", "snow"], adjs=ANIMAL_ADJ, actions=WILD_ACTIONS,
        verbs=["watching", "photographing"], collectives=["A group of"]),
    "zoo": dict(
        objects="tiger; monkey; kangaroo; panda; polar bear; camel; gorilla",
        scenes=["zoo"], adjs=ANIMAL_ADJ, actions=WILD_ACTIONS,
        verbs=["watching", "photographing"], collectives=["A group of"]),
    "bird": dict(
        objects="bird; seagull; pigeon; owl; eagle; parrot; swan; flamingo; penguin; hummingbird; robin; crow; "
                "sparrow",
        scenes=["perch", "park"], adjs=BIRD_ADJ, actions=BIRD_ACTIONS,
        verbs=["feeding", "watching", "photographing"], collectives=["A flock of"]),
    "aquatic": dict(
        objects="goldfish|goldfish; fish|fish; dolphin; sea turtle; jellyfish|jellyfish; crab; "
                "octopus|octopuses; whale; seal; clownfish|clownfish",
        scenes=["underwater"], adjs=["small", "large", "young", "colorful", "curious"], actions=WATER_ACTIONS,
        verbs=["watching", "photographing"], collectives=["A group of"]),
    "small": dict(
        objects="butterfly|butterflies; bee; ladybug; dragonfly|dragonflies; spider; snail; caterpillar; "
                "grasshopper",
        scenes=["small_spot", "meadow"], adjs=["small", "tiny", "colorful", "large"], actions=SMALL_ACTIONS,
        verbs=["photographing", "looking at"], collectives=["A group of"]),
    "person": dict(
        objects="person|people; man|men; woman|women; child|children; boy; girl; young woman|young women; "
                "young man|young men; old man|old men; elderly woman|elderly women; teenager; doctor; nurse; "
                "chef; police officer; tourist; firefighter",
        scenes=["street", "park", "beach", "home", "kitchen", "office", "cafe"],
        adjs=PERSON_ADJ, actions=PERSON_ACTIONS,
        verbs=["talking to", "walking with", "standing next to", "hugging"],
        collectives=["A group of", "A crowd of"]),
    "astronaut": dict(
        objects="astronaut",
        scenes=["space", "surface", "studio"], adjs=["smiling", "young", "lone"], actions=ASTRONAUT_ACTIONS,
        verbs=[], collectives=["A group of"]),
    "fruit": dict(
        objects="banana; apple; orange; strawberry|strawberries; bunch of grapes; lemon; watermelon; pineapple; "
                "peach|peaches; pear; mango|mangoes; cherry|cherries; avocado; coconut",
        scenes=["food_table", "plate", "studio", "market"], adjs=FRUIT_ADJ,
        verbs=["eating", "holding", "slicing"], collectives=["A pile of", "A basket of", "A bowl of", "A crate of"]),
    "veg": dict(
        objects="head of broccoli; carrot; tomato|tomatoes; potato|potatoes; onion; cucumber; head of lettuce; "
                "ear of corn; mushroom; pumpkin; eggplant; bell pepper",
        scenes=["food_table", "plate", "studio", "market"], adjs=VEG_ADJ,
        verbs=["holding", "chopping", "washing"], collectives=["A pile of", "A basket of", "A crate of"]),
    "food": dict(
        objects="sandwich; hot dog; pizza; donut; cake; plate of food; bowl of soup; hamburger; slice of pizza; "
                "croissant; loaf of bread|loaves of bread; bagel; cupcake; cookie; taco; plate of pasta; sushi roll; "
                "bowl of rice; stack of pancakes; ice cream cone; chocolate bar; pie; muffin; salad; burrito; "
                "bowl of cereal; slice of cake",
        scenes=["food_table", "plate", "cafe", "studio"], adjs=FOOD_ADJ,
        verbs=["eating", "holding"], collectives=["A plate of", "A tray of", "A box of"]),
    "hot_drink": dict(
        objects="cup of coffee; espresso; latte; cappuccino; cup of tea; mug of hot chocolate",
        scenes=["food_table", "desk", "cafe", "studio"], adjs=HOT_DRINK_ADJ,
        verbs=["drinking", "holding"], collectives=["A tray of"]),
    "cold_drink": dict(
        objects="glass of wine; glass of milk; glass of orange juice; bottle of beer; can of soda; smoothie; "
                "cocktail; glass of water; milkshake; glass of lemonade",
        scenes=["food_table", "cafe", "studio"], adjs=COLD_DRINK_ADJ,
        verbs=["drinking", "holding"], collectives=["A tray of", "A row of"]),
    "kitchenware": dict(
        objects="bottle; wine glass; cup; mug; teacup; fork; knife|knives; spoon; bowl; plate; teapot; "
                "frying pan; cutting board; kettle; jar; pitcher; saucepan",
        scenes=["table", "kitchen", "studio"], adjs=["clean", "dirty", "old", "small", "large", "empty"],
        colors=["red", "blue", "white", "black", "green", "yellow"],
        verbs=["holding", "washing"], collectives=["A row of", "A set of"]),
    "appliance": dict(
        objects="microwave; oven; toaster; refrigerator; television; dishwasher; washing machine; blender; "
                "coffee maker; vacuum cleaner; electric fan",
        scenes=["kitchen", "studio"], adjs=["old", "new", "modern", "small", "large"],
        colors=["white", "black", "silver", "red", "stainless steel"],
        verbs=["using", "cleaning"], collectives=["A row of"]),
    "bath": dict(
        objects="toilet; bathtub; sink",
        scenes=["bathroom"], adjs=["white", "clean", "dirty", "old", "modern", "small"],
        verbs=["cleaning"], collectives=["A row of"]),
    "device": dict(
        objects="laptop; computer mouse|computer mice; remote control; keyboard; cell phone; smartphone; camera; "
                "tripod; telescope; pair of headphones; tablet; desktop computer; microphone; calculator; "
                "wristwatch|wristwatches; pair of binoculars; flashlight; video game controller; film camera; "
                "typewriter; radio",
        scenes=["table", "home", "office", "studio"], adjs=["old", "new", "modern", "small", "vintage", "broken"],
        colors=["black", "white", "silver", "red"],
        verbs=["using", "holding"], collectives=["A collection of", "A row of"]),
    "tool": dict(
        objects="hammer; screwdriver; wrench; pair of pliers; saw; power drill; tape measure; paintbrush|paintbrushes; "
                "toolbox|toolboxes",
        scenes=["table", "garage", "studio"], adjs=["old", "new", "small", "large", "worn", "rusty"],
        colors=["red", "black", "yellow", "blue"],
        verbs=["using", "holding"], collectives=["A set of", "A collection of"]),
    "desk_item": dict(
        objects="pencil; pen; ruler; key; padlock; pair of glasses|pairs of glasses; "
                "magnifying glass|magnifying glasses; stapler; compass|compasses",
        scenes=["table", "office", "studio"], adjs=["old", "new", "small", "large", "worn"],
        colors=["red", "black", "yellow", "blue"],
        verbs=["using", "holding"], collectives=["A set of", "A collection of"]),
    "money": dict(
        objects="coins!p; gold coin; dollar bill; wallet; credit card; piggy bank",
        scenes=["table", "studio"], adjs=["old", "shiny", "new", "worn", "small"],
        verbs=["holding", "counting"], collectives=["A pile of", "A stack of"]),
    "household": dict(
        objects="book; clock; vase; pair of scissors; teddy bear; hair dryer; toothbrush|toothbrushes; candle; "
                "umbrella; backpack; handbag; suitcase; towel; pillow; blanket; mirror; basket; doll; toy car; "
                "alarm clock; globe; picture frame",
        scenes=["table", "home", "studio", "home_spot"], adjs=["old", "new", "small", "large", "vintage"],
        colors=["red", "blue", "green", "yellow", "white", "black", "brown", "pink"],
        verbs=["holding", "carrying"], collectives=["A collection of", "A row of"]),
    "clothing": dict(
        objects="tie; pair of shoes; hat; baseball cap; pair of sneakers; jacket; dress|dresses; scarf|scarves; "
                "pair of boots; pair of sunglasses; T-shirt; pair of jeans; necklace; sweater; pair of gloves",
        scenes=["closet", "studio", "table"], adjs=["old", "new", "vintage", "worn"],
        colors=["red", "blue", "green", "yellow", "white", "black", "brown", "pink", "purple"],
        verbs=["wearing", "holding"], collectives=["A pile of", "A row of"]),
    "seat": dict(
        objects="chair; couch|couches; armchair; stool; rocking chair; sofa; bed",
        scenes=["home", "studio"], adjs=["old", "new", "modern", "comfortable", "wooden", "small", "large"],
        colors=["red", "blue", "green", "white", "black", "brown", "gray"],
        verbs=["sitting on"], collectives=["A row of"]),
    "furniture": dict(
        objects="dining table; desk; bookshelf|bookshelves; lamp; wardrobe; dresser; coffee table; fireplace",
        scenes=["home", "studio"], adjs=["old", "modern", "antique", "small", "large", "wooden"],
        colors=["white", "black", "brown"],
        verbs=["standing next to", "cleaning"], collectives=["A row of"]),
    "instrument": dict(
        objects="guitar; acoustic guitar; electric guitar; piano; violin; drum set; trumpet; saxophone; flute; "
                "cello; harp; ukulele; accordion; grand piano; banjo",
        scenes=["stage", "home", "studio"], adjs=["old", "vintage", "beautiful", "small", "classic"],
        colors=["black", "white", "red"],
        verbs=["playing"], collectives=["A collection of"]),
    "sports": dict(
        objects="frisbee; pair of skis; snowboard; soccer ball; basketball; football; tennis ball; baseball; kite; "
                "baseball bat; baseball glove; skateboard; surfboard; tennis racket; golf ball; bicycle helmet; "
                "pair of roller skates; volleyball; hockey stick; dumbbell; bowling ball; yoga mat; ball",
        scenes=["sport", "park", "studio"], adjs=["old", "new", "small", "worn"],
        colors=["red", "blue", "green", "yellow", "white", "black", "orange"],
        verbs=["holding", "carrying"], collectives=["A pile of", "A row of"]),
    "vehicle": dict(
        objects="bicycle; car; motorcycle; bus|buses; truck; scooter; van; taxi; police car; fire truck; tractor; "
                "school bus|school buses; pickup truck; vintage car; sports car; ambulance",
        scenes=["road", "street", "town"], adjs=["old", "new", "parked", "rusty", "shiny", "small", "large"],
        colors=["red", "blue", "green", "yellow", "white", "black", "silver", "orange"],
        verbs=["driving", "standing next to"], collectives=["A row of", "A line of"]),
    "rail": dict(
        objects="train; tram; subway train; steam locomotive; freight train",
        scenes=["rail"], adjs=["old", "modern", "long", "crowded"], colors=["red", "blue", "yellow"],
        verbs=["waiting for", "boarding"], collectives=["A row of"]),
    "air": dict(
        objects="airplane; helicopter; hot air balloon; fighter jet; passenger jet; seaplane; glider",
        scenes=["air"], adjs=["large", "small", "old", "vintage", "military"], colors=["white", "red", "yellow"],
        verbs=["watching", "photographing"], collectives=["A group of", "A row of"]),
    "space": dict(
        objects="rocket; space shuttle; satellite; space station; lunar lander; Mars rover",
        scenes=["space"], adjs=["large", "white", "old", "distant", "tall"],
        verbs=["watching", "photographing"], collectives=["A group of"]),
    "boat": dict(
        objects="boat; sailboat; canoe; kayak; cargo ship; yacht; ferry|ferries; rowboat; fishing boat; "
                "cruise ship; speedboat",
        scenes=["water", "beach"], adjs=["small", "large", "old", "wooden"], colors=["white", "red", "blue", "yellow"],
        verbs=["watching", "photographing"], collectives=["A row of", "A group of"]),
    "street_item": dict(
        objects="traffic light; fire hydrant; stop sign; parking meter; street lamp; mailbox|mailboxes; "
                "phone booth; bench|benches; bus stop; trash can",
        scenes=["street", "town"], adjs=["old", "rusty", "broken", "new", "weathered"],
        verbs=["standing next to", "walking past"], collectives=["A row of"]),
    "building": dict(
        objects="house; church|churches; skyscraper; lighthouse; castle; barn; bridge; clock tower; log cabin; "
                "windmill; temple; apartment building; stadium; farmhouse",
        scenes=["town", "landscape"], adjs=BUILDING_ADJ, colors=["white", "red"],
        verbs=["standing in front of", "walking toward", "photographing"], collectives=["A row of"],
        backdrop=True),
    "flower": dict(
        objects="flower; rose; sunflower; tulip; daisy|daisies; lily|lilies; orchid; bouquet of flowers; dandelion",
        scenes=["meadow", "vase", "studio", "table"], adjs=["beautiful", "blooming", "wild", "small"],
        colors=["red", "yellow", "white", "pink", "purple"],
        verbs=["holding", "smelling", "photographing"], collectives=["A bunch of", "A field of", "A row of"]),
    "tree": dict(
        objects="tree; palm tree; pine tree; oak tree; maple tree; willow tree; cherry blossom tree",
        scenes=["park", "forest", "landscape"], adjs=["tall", "old", "small", "large", "lone", "young"],
        verbs=["sitting under", "standing next to", "climbing"], collectives=["A row of"]),
    "houseplant": dict(
        objects="potted plant; fern; bonsai tree; cactus|cacti; succulent",
        scenes=["table", "home", "office", "studio"], adjs=["small", "large", "green", "healthy", "tall"],
        verbs=["watering", "holding"], collectives=["A row of", "A collection of"]),
    "landscape": dict(
        objects="mountain; waterfall; river; lake; volcano|volcanoes; large rock; ocean wave; sand dune; iceberg; "
                "island; glacier; canyon; hill",
        scenes=["landscape"], adjs=LAND_ADJ,
        verbs=["looking at", "photographing"], collectives=[], backdrop=True),
    "sky": dict(
        objects="moon!u; full moon; crescent moon; galaxy|galaxies; stars!p; nebula|nebulae; comet; planet; sun!u; "
                "Milky Way!u; rainbow; storm cloud; lightning bolt; shooting star; solar eclipse|solar eclipses; "
                "northern lights!u",
        scenes=["sky"], adjs=SKY_ADJ,
        verbs=["looking at", "photographing", "pointing at"], collectives=[], backdrop=True),
    "document": dict(
        objects="page of printed text; handwritten letter; newspaper; magazine; map; receipt; restaurant menu; "
                "notebook; page of sheet music; page of a book|pages of a book; envelope; postcard; calendar",
        scenes=["paper", "studio"], adjs=PAPER_ADJ,
        verbs=["reading", "holding"], collectives=["A stack of", "A pile of"]),
    "scan": dict(
        objects="retina scan; chest X-ray; MRI scan; brain scan; ultrasound image; CT scan; dental X-ray; "
                "microscope image of cells|microscope images of cells; X-ray of a hand|X-rays of a hand",
        scenes=["screen", "studio"], adjs=SCAN_ADJ,
        verbs=["looking at", "examining"], subjects=MEDICAL_PEOPLE, collectives=[]),
    "medical": dict(
        objects="stethoscope; syringe; thermometer; bottle of pills; first aid kit; microscope; "
                "blood pressure monitor; wheelchair; hospital bed",
        scenes=["hospital", "tray", "studio"], adjs=["old", "new", "small", "modern"],
        colors=["white", "black", "silver"],
        verbs=["using", "holding"], subjects=MEDICAL_PEOPLE, collectives=["A row of"]),
}

# Per-object scene overrides (replace the category's scene groups).
_BAKED = ["food_table", "plate", "cafe", "studio", "bakery"]
OBJ_SCENES = {
    "polar bear": ["zoo", "snow"], "camel": ["desert", "zoo"], "swan": ["water", "park"],
    "flamingo": ["water", "savanna", "zoo"], "penguin": ["beach", "snow", "zoo"],
    "seagull": ["beach", "water", "perch"], "duck": ["water", "park", "farm"], "goose": ["water", "park", "farm"],
    "crab": ["beach", "underwater"], "seal": ["beach", "open_sea"], "dolphin": ["open_sea", "underwater"],
    "whale": ["open_sea"], "octopus": ["underwater", "open_sea"], "jellyfish": ["underwater", "open_sea"],
    "sea turtle": ["underwater", "open_sea", "beach"], "goldfish": ["pond", "underwater"],
    "fish": ["pond", "underwater"],
    "tractor": ["farm", "road"], "pickup truck": ["road", "street", "farm"],
    "pair of skis": ["snow", "studio"], "snowboard": ["snow", "studio"], "surfboard": ["beach", "studio"],
    "skateboard": ["skate", "street", "studio"], "tennis ball": ["tennis", "studio"],
    "tennis racket": ["tennis", "studio"], "baseball": ["baseball", "studio"], "baseball bat": ["baseball", "studio"],
    "baseball glove": ["baseball", "studio"], "soccer ball": ["soccer", "park", "studio"],
    "basketball": ["court", "studio"], "golf ball": ["golf", "studio"], "kite": ["park", "beach"],
    "frisbee": ["park", "beach"], "pair of roller skates": ["skate", "studio"],
    "bench": ["park", "street"], "trash can": ["street", "park"], "barn": ["farm", "landscape"],
    "farmhouse": ["farm", "landscape"], "palm tree": ["beach", "park"], "pine tree": ["forest", "snow", "landscape"],
    "lunar lander": ["surface", "space"], "Mars rover": ["surface", "studio"],
    "bed": ["bedroom", "studio"], "suitcase": ["home", "studio", "street"], "umbrella": ["street", "beach", "studio"],
    "backpack": ["office", "studio", "park"], "telescope": ["home", "studio", "park"],
    "pumpkin": ["market", "food_table", "farm"], "dining table": ["dining", "studio"],
    "coffee table": ["living", "studio"], "fireplace": ["living"], "couch": ["living", "studio"],
    "sofa": ["living", "studio"], "armchair": ["living", "studio"], "rocking chair": ["living", "studio"],
    "wheelchair": ["hospital", "studio"],
    "hospital bed": ["hospital", "studio"], "microscope": ["hospital", "studio"],
    "blood pressure monitor": ["hospital", "studio"],
    "sun": ["day_sky"], "solar eclipse": ["day_sky", "sky"], "rainbow": ["weather"], "storm cloud": ["weather"],
    "lightning bolt": ["weather", "sky"], "moon": ["sky", "day_sky"], "full moon": ["sky"],
    "seaplane": ["water", "air"],
    "bowling ball": ["sport", "studio"], "dumbbell": ["sport", "studio"], "yoga mat": ["sport", "home", "studio"],
    "television": ["home", "studio"], "vacuum cleaner": ["home", "studio"], "electric fan": ["home", "office"],
    "washing machine": ["laundry", "studio"], "chair": ["home", "office", "kitchen", "studio"],
    "stool": ["kitchen", "home", "studio"], "desk": ["office", "home"], "bookshelf": ["office", "home"],
    "wardrobe": ["bedroom", "studio"], "dresser": ["bedroom", "studio"], "calculator": ["table", "office"],
    "desktop computer": ["office", "home"], "typewriter": ["table", "office", "studio"],
    "book": ["table", "office", "home", "home_spot"], "globe": ["table", "office", "studio"],
    "cake": _BAKED, "donut": _BAKED, "croissant": _BAKED, "loaf of bread": _BAKED, "bagel": _BAKED,
    "cupcake": _BAKED, "cookie": _BAKED, "pie": _BAKED, "muffin": _BAKED, "slice of cake": _BAKED,
    "hockey stick": ["sport", "studio"], "toothbrush": ["bathroom", "table", "studio"],
    "hair dryer": ["bathroom", "table", "studio"], "towel": ["bathroom", "home_spot", "studio"],
}

OBJ_VERBS = {
    "dog": ["walking", "petting", "playing with"], "puppy": ["walking", "petting", "holding", "cuddling"],
    "golden retriever": ["walking", "petting"], "Labrador": ["walking", "petting"],
    "German shepherd": ["walking", "petting"], "beagle": ["walking", "petting", "holding"],
    "poodle": ["walking", "petting", "holding"], "bulldog": ["walking", "petting"], "husky": ["walking", "petting"],
    "horse": ["riding", "feeding", "brushing"], "pony": ["riding", "feeding"], "donkey": ["riding", "feeding"],
    "camel": ["riding", "feeding"], "elephant": ["riding", "watching", "photographing"],
    "bicycle": ["riding", "pushing"], "motorcycle": ["riding", "standing next to"], "scooter": ["riding"],
    "bus": ["waiting for", "driving"], "school bus": ["waiting for", "driving"], "taxi": ["waiting for", "driving"],
    "kite": ["flying"], "frisbee": ["throwing", "catching"], "soccer ball": ["kicking"],
    "basketball": ["dribbling", "throwing"], "football": ["throwing", "catching"],
    "tennis ball": ["throwing", "hitting"],
    "baseball": ["throwing", "catching"], "volleyball": ["hitting", "serving"], "ball": ["throwing", "kicking"],
    "skateboard": ["riding", "carrying"], "surfboard": ["riding", "carrying"], "snowboard": ["riding", "carrying"],
    "pair of skis": ["carrying"], "baseball bat": ["swinging", "holding"], "tennis racket": ["swinging", "holding"],
    "dumbbell": ["lifting"], "bicycle helmet": ["wearing"], "pair of roller skates": ["wearing"],
    "kayak": ["paddling"], "canoe": ["paddling"], "rowboat": ["rowing"], "sailboat": ["sailing"],
    "yacht": ["sailing"], "bench": ["sitting on"], "bus stop": ["waiting at"], "bed": ["lying on", "sitting on"],
    "airplane": ["boarding", "watching"], "passenger jet": ["boarding", "watching"],
    "book": ["reading", "holding"], "umbrella": ["holding", "carrying"], "camera": ["holding", "using"],
    "toothbrush": ["using", "holding"], "hair dryer": ["using", "holding"], "teddy bear": ["hugging", "holding"],
    "suitcase": ["carrying", "pulling"], "backpack": ["carrying", "wearing"], "handbag": ["carrying"],
    "fireplace": ["sitting by"], "desk": ["sitting at"], "dining table": ["sitting at"],
    "wheelchair": ["pushing", "sitting in"], "hospital bed": ["lying in"],
    "toilet": ["cleaning"], "bathtub": ["cleaning"], "sink": ["cleaning"],
}

OBJ_ACTIONS = {
    "crab": ["crawling", "resting", "hiding"], "seal": ["resting", "lying down", "sleeping", "looking at the camera"],
    "penguin": ["standing", "walking", "resting", "looking at the camera"],
    "swan": ["swimming", "resting", "standing"], "duck": ["swimming", "resting", "standing", "walking"],
    "goose": ["swimming", "standing", "walking", "resting"],
}

# Actions that read well without a scene ("A cat yawning."); the rest need one.
SOLO_ACTIONS = {"sleeping", "yawning", "stretching", "grazing", "swimming", "smiling", "laughing", "waving",
                "crawling", "playing", "running", "floating", "curled up"}

OBJ_COLLECTIVES = {
    "piano": [], "grand piano": [], "drum set": [], "harp": [], "stadium": [], "fireplace": [],
    "cow": ["A herd of"], "horse": ["A herd of"], "goat": ["A herd of"], "pony": ["A herd of"],
    "alpaca": ["A herd of"], "llama": ["A herd of"], "sheep": ["A flock of"], "chicken": ["A flock of"],
    "duck": ["A flock of"], "goose": ["A flock of"], "elephant": ["A herd of"], "zebra": ["A herd of"],
    "giraffe": ["A herd of", "A group of"], "deer": ["A herd of"], "wolf": ["A pack of"], "lion": ["A pride of"],
    "fish": ["A school of"], "goldfish": ["A group of"], "clownfish": ["A group of"], "dolphin": ["A pod of"],
    "owl": ["A group of"], "eagle": ["A group of"], "parrot": ["A group of"], "hummingbird": ["A group of"],
    "bee": ["A swarm of"], "camel": ["A group of", "A caravan of"],
}

# Which categories may be paired in "X next to Y" / "X and Y in ..." captions.
_DRINKS = {"hot_drink", "cold_drink"}
AFFINITY = {
    "pet": {"pet", "baby", "person", "household", "seat", "sports"},
    "baby": {"pet", "baby", "household", "seat"},
    "farm": {"farm", "pet", "person", "vehicle"},
    "savanna": {"savanna", "bird"}, "woodland": {"woodland", "bird"}, "zoo": {"zoo"},
    "bird": {"bird", "farm", "boat", "street_item", "savanna", "woodland"},
    "aquatic": {"aquatic"}, "small": {"small", "flower", "tree"},
    "person": {"person", "pet", "baby", "farm"}, "astronaut": {"astronaut", "space"},
    "fruit": {"fruit", "veg", "kitchenware", "cold_drink"}, "veg": {"veg", "fruit", "kitchenware"},
    "food": {"food", "kitchenware", "fruit"} | _DRINKS,
    "hot_drink": {"food", "kitchenware", "device", "document", "desk_item"} | _DRINKS,
    "cold_drink": {"food", "fruit", "kitchenware"} | _DRINKS,
    "kitchenware": {"kitchenware", "appliance", "fruit", "veg", "food"} | _DRINKS,
    "appliance": {"appliance", "kitchenware"},
    "bath": {"bath", "household"}, "device": {"device", "document", "hot_drink", "desk_item", "money"},
    "tool": {"tool"}, "desk_item": {"desk_item", "device", "document", "money", "hot_drink"},
    "money": {"money", "document", "device", "desk_item"},
    "household": {"household", "device", "document", "houseplant", "furniture", "hot_drink"},
    "clothing": {"clothing"}, "seat": {"seat", "furniture", "household", "houseplant", "instrument"},
    "furniture": {"seat", "furniture", "household", "houseplant", "appliance"},
    "instrument": {"instrument", "seat", "furniture"}, "sports": {"sports"},
    "vehicle": {"vehicle", "street_item"}, "rail": {"rail"}, "air": {"air"}, "space": {"space"},
    "boat": {"boat"}, "street_item": {"street_item", "vehicle", "tree"},
    "flower": {"flower", "houseplant", "small", "household"}, "tree": {"tree", "flower", "street_item"},
    "houseplant": {"houseplant", "flower", "household", "furniture", "seat"},
    "document": {"document", "hot_drink", "device", "money", "household", "desk_item"},
    "scan": {"scan"}, "medical": {"medical"},
}

# "X with Y in the background": which subjects, and which backdrops.
BACKDROP_USERS = {"vehicle", "rail", "boat", "air", "person", "pet", "farm", "savanna", "woodland",
                  "street_item", "building", "tree", "landscape"}
BACKDROPS = {"mountain", "waterfall", "lake", "volcano", "hill", "river", "canyon", "moon", "full moon",
             "crescent moon", "rainbow", "storm cloud", "Milky Way", "stars", "northern lights", "sun", "house",
             "church", "lighthouse", "castle", "barn", "bridge", "clock tower", "log cabin", "windmill",
             "skyscraper", "farmhouse"}
RURAL_BUILDINGS = {"barn", "farmhouse", "windmill", "log cabin"}
NO_BACKDROP = {"ocean wave", "sand dune", "iceberg", "glacier", "island", "canyon", "large rock"}

# Things that read oddly when counted ("Three full moons").
NO_COUNT = {"full moon", "crescent moon", "solar eclipse", "rainbow", "lightning bolt", "canyon", "glacier",
            "stadium", "Mars rover", "lunar lander", "space station", "fireplace", "grand piano", "drum set"}

# Words that never count when checking whether a scene repeats the object's own noun.
STOP = {"a", "an", "the", "of", "on", "in", "at", "to", "by", "near", "next", "with", "over", "above", "under",
        "against", "front", "small", "large", "old"}

# Nouns that matter for article choice.
AN_WORDS = {"mri", "x-ray", "hour", "honest", "heir"}
A_WORDS = {"one", "once", "ukulele", "unicorn", "uniform", "unicycle", "european", "useful", "used", "usb"}

# Word-level irregular plurals applied to the head noun.
IRREGULAR = {
    "man": "men", "woman": "women", "child": "children", "person": "people", "mouse": "mice",
    "sheep": "sheep", "deer": "deer", "fish": "fish", "goose": "geese", "knife": "knives", "leaf": "leaves",
    "wolf": "wolves", "loaf": "loaves", "calf": "calves", "scarf": "scarves", "shelf": "shelves",
    "cactus": "cacti", "tomato": "tomatoes", "potato": "potatoes", "volcano": "volcanoes", "mango": "mangoes",
    "nebula": "nebulae", "tooth": "teeth", "foot": "feet",
}

COLOR_SET = set(COLORS)


def pluralize_word(word: str) -> str:
    low = word.lower()
    if low in IRREGULAR:
        return IRREGULAR[low]
    if re.search(r"(s|x|z|ch|sh)$", low):
        return word + "es"
    if re.search(r"[^aeiou]y$", low):
        return word[:-1] + "ies"
    return word + "s"


def pluralize(name: str) -> str:
    if " of " in name:
        head, rest = name.split(" of ", 1)
        return pluralize(head) + " of " + rest
    words = name.split(" ")
    words[-1] = pluralize_word(words[-1])
    return " ".join(words)


def article(phrase: str) -> str:
    first = phrase.split(" ", 1)[0].lower()
    if first in AN_WORDS:
        return "an"
    if first in A_WORDS or first.startswith(("uni", "use", "eu", "one")):
        return "a"
    return "an" if first[0] in "aeiou" else "a"


def content_words(text: str) -> set[str]:
    return {w for w in re.findall(r"[a-z']+", text.lower()) if w not in STOP}


class Obj:
    def __init__(self, name: str, plural: str | None, flag: str, cat: str, spec: dict):
        self.name = name
        self.flag = flag  # "", "u" (unique, "the X") or "p" (plural-only noun)
        self.plural = plural if plural else (name if flag == "p" else pluralize(name))
        self.cat = cat
        self.countable = flag == "" and name not in NO_COUNT
        self.animate = bool(spec.get("actions"))
        self.actions = list(OBJ_ACTIONS.get(name, spec.get("actions") or []))
        self.solo_actions = [x for x in self.actions if " " in x or x in SOLO_ACTIONS]
        self.plain_adjs = list(spec.get("adjs", []))
        self.colors = [c for c in spec.get("colors", []) if not (content_words(name) & COLOR_SET)]
        words = content_words(name)
        self.plain_adjs = [a for a in self.plain_adjs if not (content_words(a) & words)]
        self.colors = [c for c in self.colors if c not in words]
        self.adjs = self.plain_adjs + self.colors
        groups = OBJ_SCENES.get(name, spec["scenes"])
        self.groups = list(groups)
        self.scenes: list[str] = []
        self.place_scenes: list[str] = []
        self.time_scenes: set[str] = set()
        self.outdoor = False
        for g in groups:
            is_place, phrases = SCENE_GROUPS[g]
            if g in OUTDOOR_GROUPS:
                self.outdoor = True
            for s in phrases:
                if content_words(s) & words:
                    continue
                if s not in self.scenes:
                    self.scenes.append(s)
                if is_place and s not in self.place_scenes:
                    self.place_scenes.append(s)
                if g in TIME_GROUPS:
                    self.time_scenes.add(s)
        self.verbs = list(OBJ_VERBS.get(name, spec.get("verbs", [])))
        self.subjects = list(spec.get("subjects") or PEOPLE)
        self.collectives = list(OBJ_COLLECTIVES.get(name, spec.get("collectives", [])))
        self.backdrop = bool(spec.get("backdrop"))
        self.tabletop = any(g in ("table", "plate", "paper") for g in groups)
        self.partners: list[Obj] = []
        self.backdrops: list[Obj] = []

    def np(self, adj: str | None = None) -> str:
        """Singular noun phrase with its article, e.g. 'an old car', 'the moon', 'shiny coins'."""
        core = f"{adj} {self.name}" if adj else self.name
        if self.flag == "u":
            return "the " + core
        if self.flag == "p":
            return core
        return f"{article(core)} {core}"

    def nps(self, adj: str | None = None) -> str:
        """Bare plural noun phrase, e.g. 'old cars' (no adjective on 'pairs of X' style names)."""
        return f"{adj} {self.plural}" if adj and " of " not in self.name else self.plural


def parse_objects() -> list[Obj]:
    objs: list[Obj] = []
    seen: set[str] = set()
    for cat, spec in CATEGORIES.items():
        for raw in spec["objects"].split(";"):
            raw = raw.strip()
            flag = ""
            if "!" in raw:
                raw, flag = raw.split("!", 1)
            plural = None
            if "|" in raw:
                raw, plural = raw.split("|", 1)
            if raw.lower() in seen:
                raise ValueError(f"duplicate object: {raw}")
            seen.add(raw.lower())
            objs.append(Obj(raw, plural, flag, cat, spec))
    # Partners ("X next to Y", "X and Y in ..."): non-backdrop objects sharing a real place (not a plain
    # studio backdrop). People pair only with animate things; objects only with objects.
    for o in objs:
        og = set(o.groups) - {"studio"}
        ow = content_words(o.name)
        allowed = AFFINITY.get(o.cat, set())
        for p in objs:
            if p is o or p.cat not in allowed or content_words(p.name) & ow:
                continue
            if not o.animate and p.animate:
                continue
            if og & set(p.groups):
                o.partners.append(p)
        if o.outdoor and o.cat in BACKDROP_USERS and o.name not in NO_BACKDROP:
            o.backdrops = [b for b in objs if b.name in BACKDROPS and b.cat != o.cat
                           and not (content_words(b.name) & ow)
                           and (b.cat != "building" or not o.animate or o.cat == "person"
                                or b.name in RURAL_BUILDINGS)]
    return objs


# ---------------------------------------------------------------------------
# Templates. Each takes (obj, rng) and returns a caption or None.
# ---------------------------------------------------------------------------

def _scene(o: Obj, rng: random.Random, place_only: bool = False, allow_time: bool = True) -> str | None:
    pool = o.place_scenes if place_only else o.scenes
    if not pool:
        return None
    s = rng.choice(pool)
    if allow_time and rng.random() < 0.2 and s in o.time_scenes:
        s = f"{s} {rng.choice(TIMES)}"
    return s


def _adj(o: Obj, rng: random.Random, p: float = 1.0) -> str | None:
    if o.adjs and rng.random() < p:
        return rng.choice(o.adjs)
    return None


def t_adj_scene(o, rng):
    adj, s = _adj(o, rng), _scene(o, rng)
    if not adj or not s:
        return None
    return f"{o.np(adj)} {s}."


def t_plain_scene(o, rng):
    s = _scene(o, rng)
    return f"{o.np()} {s}." if s else None


def t_two_adj(o, rng):
    if not o.colors or not o.plain_adjs:
        return None
    s = _scene(o, rng)
    if not s:
        return None
    return f"{o.np(rng.choice(o.plain_adjs) + ' ' + rng.choice(o.colors))} {s}."


def t_action_scene(o, rng):
    if not o.animate:
        return None
    s = _scene(o, rng)
    if not s:
        return None
    return f"{o.np(_adj(o, rng, 0.4))} {rng.choice(o.actions)} {s}."


def t_action(o, rng):
    if not o.solo_actions:
        return None
    return f"{o.np(_adj(o, rng, 0.7))} {rng.choice(o.solo_actions)}."


def t_count(o, rng):
    if not o.countable:
        return None
    s = _scene(o, rng)
    if not s:
        return None
    num = rng.choice(["Two", "Three", "Four", "Several", "A few"])
    return f"{num} {o.nps(_adj(o, rng, 0.4))} {s}."


def t_collective(o, rng):
    if not o.countable or not o.collectives or " of " in o.name:
        return None
    s = _scene(o, rng)
    if not s:
        return None
    return f"{rng.choice(o.collectives)} {o.nps(_adj(o, rng, 0.3))} {s}."


def t_next_to(o, rng):
    if not o.partners:
        return None
    p = rng.choice(o.partners)
    common = [s for s in o.scenes if s in p.scenes and s not in STUDIO_SCENES]
    tail = f" {rng.choice(common)}" if common and rng.random() < 0.6 else ""
    return f"{o.np()} next to {p.np()}{tail}."


def t_and(o, rng):
    if not o.partners:
        return None
    p = rng.choice(o.partners)
    common = [s for s in o.scenes if s in p.scenes and s not in STUDIO_SCENES]
    if not common:
        return None
    return f"{o.np()} and {p.np()} {rng.choice(common)}."


def t_action_next(o, rng):
    if not o.animate or not o.partners:
        return None
    p = rng.choice(o.partners)
    return f"{o.np()} {rng.choice(o.actions)} next to {p.np()}."


def t_background(o, rng):
    if not o.backdrops:
        return None
    b = rng.choice(o.backdrops)
    forms = ["with {b} in the background"]
    if b.cat == "building":
        forms += ["in front of {b}", "near {b}"]
    elif b.cat == "sky":
        forms += ["under {b}"]
    else:
        forms += ["near {b}"]
    form = rng.choice(forms)
    return f"{o.np(_adj(o, rng, 0.3))} {form.format(b=b.np())}."


def t_person_verb(o, rng):
    if not o.verbs:
        return None
    verb = rng.choice(o.verbs)
    pool = ADULTS if verb == "driving" else o.subjects
    subj = rng.choice([s for s in pool if s != o.name])
    s = _scene(o, rng, place_only=True) if rng.random() < 0.55 else None
    tail = f" {s}" if s else ""
    return f"{article(subj)} {subj} {verb} {o.np()}{tail}."


def t_single(o, rng):
    if not o.countable or o.cat in ("person", "baby", "astronaut"):
        return None
    s = _scene(o, rng)
    if not s:
        return None
    return f"{rng.choice(['A single', 'A lone'])} {o.name} {s}."


def t_view(o, rng):
    if not (o.backdrop or o.cat in ("boat", "air", "space")):
        return None
    s = _scene(o, rng)
    if not s:
        return None
    return f"A view of {o.np(_adj(o, rng, 0.5))} {s}."


def t_there(o, rng):
    s = _scene(o, rng)
    if not s:
        return None
    be = "are" if o.flag == "p" else "is"
    return f"There {be} {o.np(_adj(o, rng, 0.3))} {s}."


def t_style(o, rng):
    style, adj = rng.choice(STYLES), _adj(o, rng, 0.4)
    if adj and content_words(adj) & content_words(style):
        adj = None
    return f"{style} {o.np(adj)}."


def t_style_scene(o, rng):
    s = _scene(o, rng, allow_time=False)
    if not s:
        return None
    return f"{rng.choice(STYLES)} {o.np()} {s}."


def t_overhead(o, rng):
    if not o.tabletop:
        return None
    s = _scene(o, rng, allow_time=False)
    if not s or not s.startswith("on "):
        return None
    return f"{rng.choice(OVERHEAD)} {o.np()} {s}."


# (function, weight, is_photo_style)
TEMPLATES = [
    (t_adj_scene, 14, False),
    (t_plain_scene, 7, False),
    (t_two_adj, 4, False),
    (t_action_scene, 16, False),
    (t_action, 5, False),
    (t_count, 6, False),
    (t_collective, 5, False),
    (t_next_to, 5, False),
    (t_and, 4, False),
    (t_action_next, 4, False),
    (t_background, 3, False),
    (t_person_verb, 12, False),
    (t_single, 2, False),
    (t_view, 2, False),
    (t_there, 3, False),
    (t_style, 4, True),
    (t_style_scene, 3, True),
    (t_overhead, 1, True),
]

STUDIO_SCENES = set(SCENE_GROUPS["studio"][1])


def finalize(text: str) -> str | None:
    text = re.sub(r"\s+", " ", text).strip()
    if not text.endswith("."):
        return None
    text = text[0].upper() + text[1:]
    n = len(text[:-1].split(" "))
    if n < MIN_WORDS or n > MAX_WORDS:
        return None
    return text


def generate() -> tuple[list[str], dict]:
    rng = random.Random(SEED)
    objs = parse_objects()
    captions: list[str] = []
    seen: set[str] = set()
    per_obj = {o.name: 0 for o in objs}
    style_count = 0
    funcs = [t[0] for t in TEMPLATES]
    weights = [t[1] for t in TEMPLATES]
    styles = {t[0] for t in TEMPLATES if t[2]}
    stalled = 0
    while len(captions) < TARGET:
        order = list(objs)
        rng.shuffle(order)
        added_this_pass = 0
        for o in order:
            if len(captions) >= TARGET:
                break
            for _ in range(60):
                fn = rng.choices(funcs, weights)[0]
                cap = fn(o, rng)
                if cap is None:
                    continue
                cap = finalize(cap)
                if cap is None or cap.lower() in seen:
                    continue
                seen.add(cap.lower())
                captions.append(cap)
                per_obj[o.name] += 1
                added_this_pass += 1
                if fn in styles:
                    style_count += 1
                break
        stalled = stalled + 1 if added_this_pass == 0 else 0
        if stalled > 3:
            raise RuntimeError("caption generation stalled")
    stats = {"objects": len(objs), "per_obj": per_obj, "style": style_count}
    return captions, stats


def main() -> int:
    captions, stats = generate()
    ordered = sorted(captions)
    random.Random(SEED).shuffle(ordered)
    OUT_PATH.parent.mkdir(parents=True, exist_ok=True)
    with open(OUT_PATH, "w", encoding="utf-8", newline="\n") as fh:
        fh.write("\n".join(ordered) + "\n")
    counts = stats["per_obj"].values()
    print(f"wrote {len(ordered)} captions to {OUT_PATH}")
    print(f"objects: {stats['objects']}, captions per object (as subject): min {min(counts)}, max {max(counts)}; "
          f"photo-style captions: {stats['style']} ({100.0 * stats['style'] / len(ordered):.1f}%)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
