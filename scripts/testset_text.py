"""The text behind data/: every sentence is fed verbatim to the synthesizer and is its exact reference.

Numbers are written the way an English transcript writes them (words below ten, digits above), so
a transcript that spells them the usual way matches without number normalisation. Edit a sentence
here and rerun ``python scripts/make_testset.py``; nothing else holds the text.
"""

# Written for this project (5-20 words each): statements, questions, names, numbers.
ENGLISH = (
    "The meeting starts at 9 tomorrow morning in the large conference room.",
    "Can you tell me where the nearest train station is?",
    "Maria sent the final report to her manager on Friday afternoon.",
    "We planted 15 new trees along the northern edge of the farm.",
    "How many people are coming to dinner tonight?",
    "I will call you later.",
    "Please turn off the lights when you leave the kitchen.",
    "David and Sarah moved to Chicago after they finished college.",
    "The bridge is about 300 meters long and carries two lanes of traffic.",
    "Why did the bus stop running on this street last year?",
    "A cold wind blew across the lake all night.",
    "She paid $45 for a new pair of boots.",
    "After the storm passed, the workers spent the whole week repairing roofs, fences and broken"
    " windows across the town.",
    "Is it going to rain again this weekend?",
    "The visitors scored 3 goals in the second half of the match.",
    "The doctor told him to drink more water and sleep longer.",
    "London is the largest city in the United Kingdom.",
    "Turn left at the second corner and walk straight for five minutes.",
    "Would you like milk or sugar in your coffee?",
    "Peter found a small black cat sleeping under his car.",
    "The company has more than 500 engineers across Europe.",
    "Please close the window now.",
    "What time does the museum open on Saturday?",
    "The river was very high after three days of heavy rain.",
    "Lucy plays the piano every evening after dinner.",
    "The price of bread has gone up again this month.",
    "Did you remember to lock the front door?",
    "The old clock in the living room stopped working many years ago.",
    "The flight to Paris leaves at 8 in the evening.",
    "The teacher wrote a long list of words on the board.",
    "There are seven days in a week and 12 months in a year.",
    "Where did you leave the keys to the garage?",
    "The new hospital will open next spring with 200 beds.",
    "He speaks English, French and a little German.",
    "The museum has a famous painting of a woman with a red umbrella.",
    "Could you please send me a copy of the contract?",
    "The baker makes fresh bread every morning before sunrise.",
    "James and his brother walked along the beach at sunset.",
    "Nobody knew the answer to the last question on the exam.",
    "When the concert ended, the whole audience stood up and clapped for a long time.",
)

# (language, source sentence, English reference translation), spoken by espeak-ng. Whisper base
# understands espeak-ng poorly; these 8 are the clearest of 24 candidates (see docs/data.md).
TRANSLATION = (
    ("de", "Ich trinke jeden Morgen eine Tasse Kaffee.", "I drink a cup of coffee every morning."),
    ("de", "Der Zug nach Berlin fährt um acht Uhr ab.", "The train to Berlin leaves at eight o'clock."),
    ("fr", "Je voudrais un café, s'il vous plaît.", "I would like a coffee, please."),
    ("fr", "Ma mère travaille dans un hôpital.", "My mother works in a hospital."),
    ("es", "¿Dónde está la estación de autobuses?", "Where is the bus station?"),
    ("es", "Mañana vamos a la playa.", "Tomorrow we are going to the beach."),
    ("it", "Oggi fa molto caldo in città.", "It is very hot in the city today."),
    ("it", "Il ristorante apre alle sette di sera.", "The restaurant opens at seven in the evening."),
)

# moonshine-voice assets/two_cities.wav reads the whole first paragraph of Dickens, "A Tale of Two
# Cities" (1859, public domain); the book's em-dash before "in short" is written as a comma.
TWO_CITIES = (
    "It was the best of times, it was the worst of times, it was the age of wisdom, it was the age"
    " of foolishness, it was the epoch of belief, it was the epoch of incredulity, it was the season"
    " of Light, it was the season of Darkness, it was the spring of hope, it was the winter of"
    " despair, we had everything before us, we had nothing before us, we were all going direct to"
    " Heaven, we were all going direct the other way, in short, the period was so far like the"
    " present period, that some of its noisiest authorities insisted on its being received, for"
    " good or for evil, in the superlative degree of comparison only."
)

# moonshine-voice assets/beckett.wav (Samuel Beckett, "Worstward Ho", 1983).
BECKETT = "Ever tried. Ever failed. No matter. Try again. Fail again. Fail better."
