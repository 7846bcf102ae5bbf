"""``topics``: English sentences over ten topics, from templates shared by every topic.

Each sentence comes from one of about fifty templates ("After the {event}, the {person}
decided to {base}.") filled with fillers of one topic (sports: "match", "coach", "score a
late goal"). Every template is used by every topic, so a probe that learns the topic cannot
lean on sentence shape; the ``template`` column lets a grouped split keep whole templates out
of training. Names, cities and times are shared by all topics for the same reason.
"""

from __future__ import annotations

import string

import numpy as np
import pandas as pd

from .base import Dataset

# Slots of each topic. ``person``, ``place``, ``thing`` and ``event`` are singular nouns used
# after "the"; ``adj`` describes an event; ``action`` is a (past tense, base form) verb
# phrase; ``subject`` a field of study or practice used without an article.
TOPICS: dict[str, dict[str, tuple]] = {
    "sports": {
        "person": ("coach", "striker", "goalkeeper", "referee", "captain", "sprinter",
                   "midfielder", "umpire", "trainer", "defender", "cyclist", "swimmer",
                   "boxer", "tennis player", "team physio", "quarterback"),
        "place": ("stadium", "gym", "locker room", "training ground", "tennis court",
                  "swimming pool", "ice rink", "race track", "football pitch", "boxing ring",
                  "ski slope", "golf course", "sports hall", "changing room", "velodrome"),
        "thing": ("ball", "whistle", "trophy", "racket", "helmet", "jersey", "stopwatch",
                  "scoreboard", "goalpost", "medal", "baseball bat", "baseball glove",
                  "starting block", "shin guard", "skipping rope"),
        "event": ("match", "tournament", "final", "derby", "marathon", "relay race",
                  "championship game", "penalty shootout", "boxing bout", "semifinal",
                  "training session", "season opener", "qualifying round", "friendly match",
                  "cup tie"),
        "adj": ("thrilling", "one-sided", "hard-fought", "physical", "tense", "exhausting",
                "dramatic", "competitive", "fast-paced", "scrappy", "energetic", "gruelling",
                "spectacular", "nail-biting", "rough"),
        "action": (("scored a late goal", "score a late goal"),
                   ("missed the penalty", "miss the penalty"),
                   ("blocked the shot", "block the shot"),
                   ("ran the final lap", "run the final lap"),
                   ("won the sprint", "win the sprint"),
                   ("served an ace", "serve an ace"),
                   ("caught the ball", "catch the ball"),
                   ("passed the ball forward", "pass the ball forward"),
                   ("stretched before the warm-up", "stretch before the warm-up"),
                   ("lifted the trophy", "lift the trophy"),
                   ("broke the world record", "break the world record"),
                   ("swam twenty lengths", "swim twenty lengths"),
                   ("threw the javelin", "throw the javelin"),
                   ("hit a home run", "hit a home run"),
                   ("saved a penalty", "save a penalty"),
                   ("changed the team formation", "change the team formation")),
        "subject": ("football", "tennis", "rugby", "cycling", "basketball", "athletics",
                    "swimming", "boxing", "cricket", "ice hockey", "volleyball", "golf",
                    "rowing", "baseball", "gymnastics"),
    },
    "cooking": {
        "person": ("chef", "baker", "sous-chef", "pastry cook", "line cook", "butcher",
                   "waiter", "food critic", "restaurant owner", "dishwasher", "caterer",
                   "head chef", "fishmonger", "cheesemaker", "sommelier"),
        "place": ("kitchen", "bakery", "restaurant", "farmers market", "steakhouse", "diner",
                  "butcher shop", "cafe", "food truck", "cooking school", "spice shop",
                  "delicatessen", "bistro", "tea room", "pizzeria"),
        "thing": ("frying pan", "oven", "rolling pin", "cutting board", "recipe book",
                  "saucepan", "whisk", "chopping knife", "mixing bowl", "blender", "soup pot",
                  "baking tray", "pepper mill", "apron", "spatula"),
        "event": ("dinner service", "banquet", "bake sale", "tasting menu", "cooking class",
                  "wedding dinner", "barbecue", "brunch", "chili contest", "pie contest",
                  "food festival", "cooking competition", "holiday feast", "wine tasting",
                  "potluck"),
        "adj": ("delicious", "flavourful", "disappointing", "hearty", "elegant", "messy",
                "satisfying", "generous", "rustic", "lavish", "fragrant", "savoury",
                "filling", "cosy", "indulgent"),
        "action": (("baked fresh bread", "bake fresh bread"),
                   ("stirred the sauce", "stir the sauce"),
                   ("chopped the onions", "chop the onions"),
                   ("roasted a chicken", "roast a chicken"),
                   ("kneaded the dough", "knead the dough"),
                   ("seasoned the soup", "season the soup"),
                   ("grilled the vegetables", "grill the vegetables"),
                   ("whipped the cream", "whip the cream"),
                   ("fried the eggs", "fry the eggs"),
                   ("peeled the potatoes", "peel the potatoes"),
                   ("simmered the stew", "simmer the stew"),
                   ("tasted the broth", "taste the broth"),
                   ("sharpened the knives", "sharpen the knives"),
                   ("plated the dessert", "plate the dessert"),
                   ("marinated the fish", "marinate the fish"),
                   ("iced the cake", "ice the cake")),
        "subject": ("baking", "French cuisine", "pastry", "vegetarian cooking", "grilling",
                    "bread making", "Italian cooking", "food science", "fermentation",
                    "Indian cuisine", "sushi", "chocolate making", "meal planning",
                    "cake decorating", "cheesemaking"),
    },
    "finance": {
        "person": ("banker", "accountant", "stockbroker", "fund manager", "investor",
                   "auditor", "financial analyst", "loan officer", "bank teller",
                   "tax adviser", "economist", "trader", "chief financial officer", "cashier",
                   "actuary"),
        "place": ("bank", "stock exchange", "trading floor", "accounting firm", "tax office",
                  "credit union", "investment firm", "central bank", "pawn shop",
                  "currency exchange", "mortgage office", "insurance office", "treasury",
                  "brokerage", "finance department"),
        "thing": ("balance sheet", "ledger", "invoice", "spreadsheet", "bank statement",
                  "tax return", "cheque", "loan agreement", "stock certificate",
                  "quarterly report", "calculator", "budget", "receipt", "credit card",
                  "pension plan"),
        "event": ("earnings call", "shareholder meeting", "merger", "audit", "stock sale",
                  "budget review", "bond auction", "interest rate decision", "market crash",
                  "public offering", "tax deadline", "board meeting", "funding round",
                  "quarterly review", "currency crisis"),
        "adj": ("profitable", "volatile", "costly", "lucrative", "risky", "turbulent",
                "expensive", "cautious", "stable", "uncertain", "painful", "rewarding",
                "disastrous", "bullish", "gloomy"),
        "action": (("sold the shares", "sell the shares"),
                   ("balanced the books", "balance the books"),
                   ("approved the loan", "approve the loan"),
                   ("checked the accounts", "check the accounts"),
                   ("filed the taxes", "file the taxes"),
                   ("cut interest rates", "cut interest rates"),
                   ("bought government bonds", "buy government bonds"),
                   ("paid off the debt", "pay off the debt"),
                   ("raised new capital", "raise new capital"),
                   ("signed the cheque", "sign the cheque"),
                   ("moved the savings into stocks", "move the savings into stocks"),
                   ("calculated the interest", "calculate the interest"),
                   ("deposited the money", "deposit the money"),
                   ("hedged the currency risk", "hedge the currency risk"),
                   ("reviewed the budget", "review the budget")),
        "subject": ("investing", "banking", "accounting", "economics", "personal finance",
                    "stock trading", "insurance", "taxation", "cryptocurrency",
                    "venture capital", "real estate investing", "microfinance",
                    "pension planning", "corporate finance", "financial regulation"),
    },
    "medicine": {
        "person": ("doctor", "nurse", "surgeon", "pharmacist", "paramedic", "midwife",
                   "dentist", "radiologist", "physiotherapist", "cardiologist",
                   "anaesthetist", "paediatrician", "health visitor", "hospital porter",
                   "lab technician"),
        "place": ("hospital", "clinic", "pharmacy", "emergency room", "operating theatre",
                  "waiting room", "maternity ward", "dental office", "intensive care unit",
                  "medical laboratory", "health centre", "rehab centre", "nursing home",
                  "blood bank", "vaccination centre"),
        "thing": ("stethoscope", "thermometer", "syringe", "prescription", "bandage",
                  "X-ray", "blood test", "wheelchair", "scalpel", "patient chart", "inhaler",
                  "vaccine", "heart monitor", "medicine cabinet", "crutch"),
        "event": ("surgery", "check-up", "vaccination drive", "ward round", "transplant",
                  "blood drive", "medical conference", "night shift", "consultation",
                  "health screening", "clinical trial", "flu outbreak", "physical exam",
                  "emergency operation", "hospital inspection"),
        "adj": ("routine", "successful", "urgent", "delicate", "complicated", "life-saving",
                "tiring", "critical", "lengthy", "invasive", "precise", "reassuring",
                "hectic", "thorough", "nerve-racking"),
        "action": (("treated the patient", "treat the patient"),
                   ("checked the blood pressure", "check the blood pressure"),
                   ("wrote a prescription", "write a prescription"),
                   ("stitched the wound", "stitch the wound"),
                   ("gave the injection", "give the injection"),
                   ("examined the X-ray", "examine the X-ray"),
                   ("took a blood sample", "take a blood sample"),
                   ("set the broken arm", "set the broken arm"),
                   ("measured the fever", "measure the fever"),
                   ("cleaned the wound", "clean the wound"),
                   ("listened to the heartbeat", "listen to the heartbeat"),
                   ("ordered more tests", "order more tests"),
                   ("changed the bandage", "change the bandage"),
                   ("updated the medical records", "update the medical records"),
                   ("prescribed antibiotics", "prescribe antibiotics")),
        "subject": ("cardiology", "surgery", "nutrition", "immunology", "neurology",
                    "paediatrics", "public health", "pharmacology", "dermatology",
                    "psychiatry", "oncology", "epidemiology", "anatomy", "genetics",
                    "dentistry"),
    },
    "music": {
        "person": ("singer", "guitarist", "drummer", "pianist", "conductor", "violinist",
                   "composer", "bass player", "saxophonist", "cellist", "DJ", "songwriter",
                   "sound engineer", "choir director", "trumpet player"),
        "place": ("concert hall", "recording studio", "opera house", "music shop",
                  "jazz club", "rehearsal room", "bandstand", "music school", "nightclub",
                  "record store", "festival stage", "piano bar", "karaoke bar",
                  "orchestra pit", "radio station"),
        "thing": ("guitar", "piano", "violin", "microphone", "drum kit", "metronome",
                  "sheet music", "amplifier", "saxophone", "headphones", "cello",
                  "tambourine", "record player", "harmonica", "tuning fork"),
        "event": ("concert", "rehearsal", "gig", "recital", "album launch", "music festival",
                  "opera premiere", "jam session", "sound check", "audition",
                  "choir performance", "encore", "open mic night", "orchestra tour",
                  "music video shoot"),
        "adj": ("loud", "soulful", "melodic", "lively", "haunting", "moving", "upbeat",
                "electrifying", "mellow", "noisy", "beautiful", "rhythmic", "harmonious",
                "experimental", "joyful"),
        "action": (("played a slow ballad", "play a slow ballad"),
                   ("tuned the guitar", "tune the guitar"),
                   ("sang the chorus", "sing the chorus"),
                   ("recorded a new song", "record a new song"),
                   ("wrote a melody", "write a melody"),
                   ("practised the scales", "practise the scales"),
                   ("conducted the orchestra", "conduct the orchestra"),
                   ("mixed the track", "mix the track"),
                   ("hummed the tune", "hum the tune"),
                   ("adjusted the microphone", "adjust the microphone"),
                   ("rehearsed the solo", "rehearse the solo"),
                   ("changed the guitar strings", "change the guitar strings"),
                   ("composed a symphony", "compose a symphony"),
                   ("improvised a jazz solo", "improvise a jazz solo"),
                   ("played the drums", "play the drums")),
        "subject": ("jazz", "opera", "hip hop", "classical music", "folk music",
                    "rock and roll", "music theory", "blues", "electronic music", "reggae",
                    "choral singing", "piano", "songwriting", "country music",
                    "orchestration"),
    },
    "weather": {
        "person": ("meteorologist", "forecaster", "storm chaser", "weather presenter",
                   "climate scientist", "weather observer", "hurricane hunter",
                   "snow plough driver", "lighthouse keeper", "flood warden",
                   "harbour master", "radar technician", "avalanche expert", "coastguard",
                   "park ranger"),
        "place": ("weather station", "coast", "harbour", "mountain pass", "valley",
                  "lighthouse", "flood barrier", "beach", "hilltop", "radar tower",
                  "riverbank", "meadow", "storm shelter", "forecasting centre", "pier"),
        "thing": ("umbrella", "barometer", "rain gauge", "weather vane", "anemometer",
                  "raincoat", "weather balloon", "snow shovel", "sandbag", "windsock",
                  "weather map", "storm warning", "hygrometer", "wellington boot",
                  "snow chain"),
        "event": ("thunderstorm", "heatwave", "blizzard", "hurricane", "flood", "drought",
                  "hailstorm", "cold snap", "downpour", "tornado", "frost", "monsoon",
                  "fog bank", "dust storm", "snowstorm"),
        "adj": ("stormy", "humid", "freezing", "windy", "foggy", "severe", "mild", "violent",
                "icy", "sweltering", "damp", "gusty", "torrential", "muggy", "bitter"),
        "action": (("measured the rainfall", "measure the rainfall"),
                   ("checked the wind speed", "check the wind speed"),
                   ("launched a weather balloon", "launch a weather balloon"),
                   ("issued a storm warning", "issue a storm warning"),
                   ("predicted heavy snow", "predict heavy snow"),
                   ("tracked the hurricane", "track the hurricane"),
                   ("recorded the temperature", "record the temperature"),
                   ("cleared the snow", "clear the snow"),
                   ("read the barometer", "read the barometer"),
                   ("studied the clouds", "study the clouds"),
                   ("piled up sandbags", "pile up sandbags"),
                   ("watched the lightning", "watch the lightning"),
                   ("reported the hail", "report the hail"),
                   ("updated the forecast", "update the forecast"),
                   ("mapped the storm", "map the storm")),
        "subject": ("meteorology", "climate science", "storm tracking",
                    "weather forecasting", "cloud physics", "hurricane research",
                    "glaciology", "flood prevention", "atmospheric science",
                    "tornado research", "rainfall patterns", "seasonal forecasting",
                    "drought monitoring", "air pollution", "ocean currents"),
    },
    "computing": {
        "person": ("programmer", "software engineer", "data scientist",
                   "system administrator", "web developer", "hacker", "network engineer",
                   "database administrator", "software tester", "security analyst",
                   "game developer", "IT technician", "computer scientist",
                   "tech support agent", "chip designer"),
        "place": ("data centre", "server room", "office", "computer lab", "tech startup",
                  "coworking space", "repair shop", "IT department", "software company",
                  "university lab", "internet cafe", "electronics store", "cloud facility",
                  "control room", "testing lab"),
        "thing": ("laptop", "server", "keyboard", "hard drive", "router", "graphics card",
                  "motherboard", "USB stick", "monitor", "source code", "database",
                  "compiler", "firewall", "circuit board", "login screen"),
        "event": ("software release", "server outage", "code review", "hackathon",
                  "system update", "product launch", "data breach", "tech conference",
                  "coding interview", "security audit", "database migration", "beta test",
                  "network failure", "sprint planning", "bug bash"),
        "adj": ("buggy", "seamless", "slow", "efficient", "glitchy", "automated",
                "disorganised", "secure", "reliable", "innovative", "frustrating",
                "technical", "smooth", "unstable", "ambitious"),
        "action": (("fixed the bug", "fix the bug"),
                   ("rebooted the server", "reboot the server"),
                   ("wrote a script", "write a script"),
                   ("deployed the update", "deploy the update"),
                   ("compiled the code", "compile the code"),
                   ("backed up the files", "back up the files"),
                   ("installed the software", "install the software"),
                   ("debugged the program", "debug the program"),
                   ("patched the firewall", "patch the firewall"),
                   ("reset the password", "reset the password"),
                   ("upgraded the memory", "upgrade the memory"),
                   ("trained a neural network", "train a neural network"),
                   ("merged the branch", "merge the branch"),
                   ("encrypted the data", "encrypt the data"),
                   ("optimised the database", "optimise the database")),
        "subject": ("programming", "machine learning", "cybersecurity", "computer graphics",
                    "networking", "databases", "cloud computing", "operating systems",
                    "robotics", "web design", "algorithms", "artificial intelligence",
                    "data science", "software testing", "quantum computing"),
    },
    "travel": {
        "person": ("tour operator", "travel agent", "tour guide", "flight attendant",
                   "cruise director", "pilot", "hotel receptionist", "taxi driver",
                   "ferry captain", "customs officer", "luggage handler", "train conductor",
                   "hostel owner", "travel blogger", "concierge"),
        "place": ("airport", "train station", "hotel lobby", "hostel", "ferry terminal",
                  "passport office", "campsite", "bus depot", "beach resort",
                  "departure lounge", "visitor centre", "travel agency", "check-in desk",
                  "car rental office", "border crossing"),
        "thing": ("suitcase", "passport", "boarding pass", "backpack", "map", "guidebook",
                  "train ticket", "travel pillow", "room key", "postcard", "visa",
                  "itinerary", "compass", "luggage tag", "phrasebook"),
        "event": ("road trip", "cruise", "flight", "safari", "city tour", "honeymoon",
                  "layover", "train journey", "hiking trip", "ferry crossing", "holiday",
                  "school trip", "pilgrimage", "beach holiday", "gap year"),
        "adj": ("relaxing", "adventurous", "scenic", "leisurely", "luxurious", "affordable",
                "crowded", "breathtaking", "delayed", "bumpy", "pleasant", "exotic",
                "overbooked", "picturesque", "eventful"),
        "action": (("packed the suitcase", "pack the suitcase"),
                   ("booked a hotel room", "book a hotel room"),
                   ("checked in for the flight", "check in for the flight"),
                   ("missed the train", "miss the train"),
                   ("showed the passport", "show the passport"),
                   ("rented a car", "rent a car"),
                   ("boarded the ferry", "board the ferry"),
                   ("bought a return ticket", "buy a return ticket"),
                   ("unpacked the luggage", "unpack the luggage"),
                   ("planned the route", "plan the route"),
                   ("sent a postcard home", "send a postcard home"),
                   ("explored the old town", "explore the old town"),
                   ("hiked to the waterfall", "hike to the waterfall"),
                   ("caught the night bus", "catch the night bus"),
                   ("printed the boarding pass", "print the boarding pass"),
                   ("asked for directions", "ask for directions")),
        "subject": ("backpacking", "ecotourism", "travel writing", "sailing", "cruising",
                    "camping", "road trips", "budget travel", "luxury travel",
                    "railway travel", "island hopping", "cultural tourism", "hiking",
                    "world geography", "travel photography"),
    },
    "space": {
        "person": ("astronaut", "astronomer", "cosmonaut", "mission controller",
                   "rocket engineer", "astrophysicist", "flight director",
                   "planetary scientist", "telescope operator", "mission specialist",
                   "satellite engineer", "launch director", "observatory director",
                   "payload specialist", "rover driver"),
        "place": ("observatory", "launch pad", "space station", "mission control",
                  "planetarium", "spaceport", "moon base", "clean room", "radio telescope",
                  "space museum", "tracking station", "astronaut training centre",
                  "rocket factory", "satellite dish", "launch tower"),
        "thing": ("telescope", "rocket", "space suit", "satellite", "lunar rover",
                  "star chart", "heat shield", "solar panel", "capsule", "antenna",
                  "fuel tank", "meteorite", "space probe", "oxygen tank", "docking port"),
        "event": ("rocket launch", "moon landing", "spacewalk", "solar eclipse",
                  "meteor shower", "docking manoeuvre", "mission briefing", "countdown",
                  "lunar eclipse", "satellite deployment", "comet flyby", "splashdown",
                  "test firing", "orbital insertion", "planetary alignment"),
        "adj": ("historic", "flawless", "daring", "rare", "luminous", "record-breaking",
                "dazzling", "long-awaited", "faint", "celestial", "unprecedented",
                "visible", "perilous", "awe-inspiring", "cosmic"),
        "action": (("launched the rocket", "launch the rocket"),
                   ("docked with the space station", "dock with the space station"),
                   ("observed a distant galaxy", "observe a distant galaxy"),
                   ("repaired the solar panel", "repair the solar panel"),
                   ("landed on the moon", "land on the moon"),
                   ("tracked the satellite", "track the satellite"),
                   ("measured the brightness of the star",
                    "measure the brightness of the star"),
                   ("photographed the nebula", "photograph the nebula"),
                   ("checked the oxygen supply", "check the oxygen supply"),
                   ("floated through the airlock", "float through the airlock"),
                   ("aimed the telescope at Mars", "aim the telescope at Mars"),
                   ("collected moon rocks", "collect moon rocks"),
                   ("calculated the orbit", "calculate the orbit"),
                   ("tested the heat shield", "test the heat shield"),
                   ("spotted a new comet", "spot a new comet")),
        "subject": ("astronomy", "astrophysics", "rocketry", "cosmology",
                    "space exploration", "planetary science", "orbital mechanics",
                    "astrobiology", "radio astronomy", "black holes", "the solar system",
                    "satellite design", "stargazing", "exoplanets", "lunar geology"),
    },
    "law": {
        "person": ("judge", "lawyer", "prosecutor", "defence attorney", "legal secretary",
                   "paralegal", "court clerk", "bailiff", "court reporter", "notary",
                   "legal scholar", "magistrate", "barrister", "legislator", "court usher"),
        "place": ("courthouse", "courtroom", "law firm", "police station", "parliament",
                  "law library", "city hall", "legal aid office", "supreme court",
                  "records office", "jury room", "notary office", "prison", "appeals court",
                  "immigration office"),
        "thing": ("contract", "gavel", "witness statement", "legal brief", "subpoena",
                  "search warrant", "affidavit", "evidence bag", "case file", "will",
                  "lease", "court order", "statute book", "patent application",
                  "property deed"),
        "event": ("trial", "hearing", "appeal", "cross-examination", "sentencing",
                  "jury selection", "settlement talks", "deposition", "arraignment",
                  "plea hearing", "custody battle", "parliamentary debate", "bar exam",
                  "retrial", "inquest"),
        "adj": ("fair", "drawn-out", "controversial", "unjust", "landmark", "adversarial",
                "procedural", "contentious", "acrimonious", "unanimous", "confidential",
                "formal", "heated", "high-profile", "impartial"),
        "action": (("questioned the suspect", "question the suspect"),
                   ("signed the contract", "sign the contract"),
                   ("filed an appeal", "file an appeal"),
                   ("read the verdict aloud", "read the verdict aloud"),
                   ("objected to the question", "object to the question"),
                   ("drafted a new law", "draft a new law"),
                   ("reviewed the evidence", "review the evidence"),
                   ("dismissed the case", "dismiss the case"),
                   ("swore an oath", "swear an oath"),
                   ("cited an old precedent", "cite an old precedent"),
                   ("settled the dispute", "settle the dispute"),
                   ("issued a warrant", "issue a warrant"),
                   ("sealed the documents", "seal the documents"),
                   ("granted bail", "grant bail"),
                   ("sentenced the defendant", "sentence the defendant"),
                   ("notarised the will", "notarise the will")),
        "subject": ("criminal law", "contract law", "constitutional law", "human rights",
                    "family law", "property law", "international law", "legal history",
                    "tax law", "patent law", "employment law", "environmental law",
                    "jurisprudence", "court procedure", "immigration law"),
    },
}

# Shared by all topics, so they carry no topic signal.
NAMES = ("Maria", "James", "Aisha", "Daniel", "Sofia", "Kenji", "Olivia", "Mateo", "Priya",
         "Lucas", "Fatima", "Noah", "Elena", "Samuel", "Chloe", "Omar", "Hannah", "Leo",
         "Grace", "Ivan")
CITIES = ("London", "Madrid", "Chicago", "Nairobi", "Sydney", "Toronto", "Mumbai", "Berlin",
          "Lisbon", "Seoul", "Cairo", "Dublin", "Lima", "Oslo", "Boston", "Vienna", "Manila",
          "Denver", "Athens", "Osaka")
TIMES = ("yesterday", "last Tuesday", "on Friday evening", "this morning", "last week",
         "early on Sunday", "late last night", "two days ago", "earlier today", "last spring",
         "on Monday afternoon", "a week ago", "last month", "this afternoon",
         "over the weekend")

# Fields: person, person2 (a different person), a_person (with "a"/"an"), place, thing,
# event, adj, a_adj, past / base (one action), subject, name, name2, time, city.
TEMPLATES = (
    "The {person} {past} at the {place} {time}.",
    "{name} said the {event} in {city} was surprisingly {adj}.",
    "After the {event}, the {person} decided to {base}.",
    "Nobody at the {place} could explain why the {thing} was missing.",
    "{name} has been interested in {subject} since early childhood.",
    "The {adj} {event} in {city} drew a lot of attention last weekend.",
    "Before leaving the {place}, the {person} checked the {thing} one more time.",
    "If the {person} does not {base} soon, the {event} will be delayed.",
    "My cousin works as {a_person} and often talks about {subject} at dinner.",
    "During the {event}, {name} noticed that the {thing} had gone missing.",
    "Experts in {subject} say the next {event} could change everything.",
    "The {person} and the {person2} argued about the {thing} for almost an hour.",
    "We read a long article about {subject} on the train {time}.",
    "Everyone agreed that the {event} was {adj}, although a few people left early.",
    "The {person} {past}, then walked back to the {place} without saying a word.",
    "Is it true that the {person} {past} {time}?",
    "{name} bought a new {thing} a few days before the {event}.",
    "According to the {person}, the {event} went better than planned.",
    "It took the {person} three tries to {base}.",
    "Please ask the {person} whether the {thing} is ready yet.",
    "The {event} was postponed because the {person} was ill.",
    "{name} wrote a long report on {subject} and sent it to the {person}.",
    "No one expected the {person} to {base} so quickly.",
    "The {thing} on the desk belongs to the {person}.",
    "News of the {event} spread quickly through {city}.",
    "{name} spent the whole afternoon at the {place} learning about {subject}.",
    "The {adj} {event} reminded {name} why so many people love {subject}.",
    "When the {person} finally arrived, the {event} had already started.",
    "{name}, a retired {person}, {past} just for fun {time}.",
    "The {person} explained the {thing} to a group of curious students.",
    "There was a long queue outside the {place} on the morning of the {event}.",
    "Why did the {person} {base} right before the {event}?",
    "A short film about {subject} won an award at a festival in {city}.",
    "The {person} smiled, picked up the {thing}, and left the {place}.",
    "In {city}, the {event} is one of the most talked-about moments of the year.",
    "Few people realise how much work goes into preparing for the {event}.",
    "The {person} told us that {subject} is much harder than it looks.",
    "We waited at the {place} for hours, but the {person} never showed up.",
    "{name} and {name2} met at the {place} to talk about the {event}.",
    "The local report described the {event} as {adj} but well organised.",
    "Even after many years of {subject}, the {person} still gets nervous before the "
    "{event}.",
    "Someone left the {thing} outside the {place} overnight, and by morning it was gone.",
    "{name} watched quietly as the {person} {past}.",
    "{a_adj} {event} is exactly what this city needed.",
    "The {person} at the {place} {past} while everyone else was asleep.",
    "Local newspapers in {city} called the {event} {adj}.",
    "As soon as the {event} ended, the {person} went straight back to the {place} to "
    "{base}.",
    "The {thing} was so important to the {person} that nobody else was allowed to touch "
    "it, not even during the {event}.",
    "Last year {name} came all the way from {city} for the {event}, and {name2} says it "
    "was worth every penny.",
    "Nobody was surprised when the {person} {past}, because {name} had predicted it {time}.",
    "The {person} could not stop talking about {subject}.",
    "Do you know whether the {person} from the {place} will {base} before the {event} "
    "begins, or should we ask {name} instead?",
)

DEFAULT_N_PER_TOPIC = 320
DESCRIPTION = (f"{len(TOPICS) * DEFAULT_N_PER_TOPIC:,} English sentences over {len(TOPICS)} "
               f"topics from {len(TEMPLATES)} shared templates (labels: topic, template)")

# Sounds a vowel letter can start without taking "an" ("a unanimous", "a USB stick").
_CONSONANT_SOUNDS = ("uni", "una", "use", "usu", "usb", "eu", "one")


def with_article(phrase: str) -> str:
    """``phrase`` with "a" or "an" in front, chosen by its first letter.

    Example:
        >>> with_article("umpire"), with_article("USB stick"), with_article("coach")
        ('an umpire', 'a USB stick', 'a coach')
    """
    low = phrase.lower()
    vowel = low[:1] in "aeiou" and not low.startswith(_CONSONANT_SOUNDS)
    return ("an " if vowel else "a ") + phrase


def _fields(template: str) -> list[str]:
    return [f for _, f, _, _ in string.Formatter().parse(template) if f]


def _pick(rng: np.random.Generator, options: tuple, avoid: int = -1) -> int:
    """A random index into ``options``, never ``avoid`` (for a second, different person)."""
    if avoid < 0:
        return int(rng.integers(len(options)))
    i = int(rng.integers(len(options) - 1))
    return i + (i >= avoid)


def _fill(template: str, slots: dict, rng: np.random.Generator) -> str:
    """One sentence: every field of ``template`` drawn from the topic's ``slots``."""
    picked: dict[str, int] = {}
    values: dict[str, str] = {}
    # Draw in the template's field order so the random stream depends only on the template.
    for field_name in _fields(template):
        base = field_name.removeprefix("a_").rstrip("2")
        if base in ("past", "base"):
            values[field_name] = slots["action"][_pick(rng, slots["action"])][
                0 if base == "past" else 1]
            continue
        options = {"name": NAMES, "city": CITIES, "time": TIMES}.get(base) or slots[base]
        i = _pick(rng, options, picked.get(base, -1) if field_name.endswith("2") else -1)
        picked[base] = i
        values[field_name] = with_article(options[i]) if field_name.startswith("a_") \
            else options[i]
    text = template.format(**values)
    return text[0].upper() + text[1:]


def build(n_per_topic: int = DEFAULT_N_PER_TOPIC, seed: int = 0) -> Dataset:
    """The ``topics`` dataset: ``n_per_topic`` unique sentences for each topic, shuffled.

    Each topic uses every template about equally often. Columns: ``doc_id``, ``text``,
    ``topic``, ``template`` (template id, for grouped splits).

    Example:
        >>> ds = build(n_per_topic=5)
        >>> len(ds), sorted(ds.docs["topic"].unique())[:3]
        (50, ['computing', 'cooking', 'finance'])
    """
    if n_per_topic < 1:
        raise ValueError(f"n_per_topic must be at least 1, got {n_per_topic}")
    rng = np.random.default_rng(seed)
    texts, topics, template_ids = [], [], []
    seen: set[str] = set()
    for topic, slots in TOPICS.items():
        plan = np.resize(np.arange(len(TEMPLATES)), n_per_topic)
        rng.shuffle(plan)
        for t in plan.tolist():
            text = _fill(TEMPLATES[t], slots, rng)
            for _ in range(1000):  # a repeat is rare: the space is millions of sentences
                if text not in seen:
                    break
                text = _fill(TEMPLATES[t], slots, rng)
            else:
                raise ValueError(f"n_per_topic={n_per_topic} is too large to keep every "
                                 f"sentence unique")
            seen.add(text)
            texts.append(text)
            topics.append(topic)
            template_ids.append(t)
    # Shuffled so that ``head(n)`` already mixes every topic.
    order = rng.permutation(len(texts))
    docs = pd.DataFrame({
        "doc_id": np.arange(len(texts), dtype=np.int64),
        "text": [texts[i] for i in order],
        "topic": [topics[i] for i in order],
        "template": np.asarray(template_ids, dtype=np.int64)[order],
    })
    return Dataset("topics", docs, description=DESCRIPTION,
                   meta={"generator": "actclust.data.topics", "n_per_topic": n_per_topic,
                         "seed": seed})
