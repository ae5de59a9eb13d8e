"""Synthetic customers CSV files in the public sample's format, for benchmarks and tests.

    generate(path, rows, seed=42, change_percent=0, dirty_percent=0, messy=False) -> GenerateResult

Design, and why:
- Fast enough for millions of rows: every name, company, city, domain and
  sentence comes from pools built once, so a row costs a few cheap `random.Random`
  draws and string joins. Fields are quoted exactly as csv.writer's QUOTE_MINIMAL
  does (a test compares the bytes) but without its per-character cost. Rows are
  written in blocks of about a megabyte: memory stays flat whatever `rows` is.
- Deterministic: one `Random(seed)` draws every base value in row order, so the
  same arguments always give a byte-identical file.
- Variants stay aligned with the base file. Changed rows take their new City and
  About Customer from a second random stream, and dirty rows are corrupted copies
  of their base row, so the main stream (hence every other row) is the same
  whatever `change_percent` and `dirty_percent` are. Customer Ids are a keyed
  bijection of the Index: unique in a file, and the same in every variant.
- Which rows are changed or dirty is a fixed pattern of the Index (`row_is_changed`,
  `row_is_dirty`), evenly spread: exactly P % of every block of 100/P rows.
- `messy` (the command's --dirty) adds what real exports hold beside bad rows:
  About texts with quoted line breaks, and good rows that repeat the previous
  good row's Customer Id (the later row wins on import).
"""

from __future__ import annotations

import hashlib
import os
import random
from dataclasses import dataclass
from datetime import date, timedelta
from functools import cache
from pathlib import Path
from typing import BinaryIO

from customers.models import Customer

from .columns import HEADER

CITY, ABOUT = HEADER.index("City"), HEADER.index("About Customer")
ABOUT_MIN_CHARS, ABOUT_MAX_CHARS = 800, 1000
# A longer Customer Id is a dirty row.
CUSTOMER_ID_LIMIT = Customer._meta.get_field("customer_id").max_length
DIRTY_KINDS = (
    "invalid email",
    "empty Customer Id",
    "impossible date",
    "too many fields",
    "too few fields",
    "Customer Id too long",
)
FLUSH_ROWS = 1000
DUPLICATE_EVERY = 101  # messy files: this row repeats the previous row's Customer Id
NEWLINE_EVERY = 37  # messy files: this row's About holds a quoted line break
POOL_SEED = 20240229  # the pools are fixed; the row seed only changes the draws
SENTENCE_BITS = 13  # 8,192 sentences of 60 to 120 characters: 17 always reach 1,000

# --- Word lists ------------------------------------------------------------------------
# (display name, e-mail slug): a few accented names keep multi-byte UTF-8 in the files.
FIRST_NAMES = [
    *(
        (name, name.lower())
        for name in """
        Aaron Abigail Adam Adrian Aiden Alan Albert Alexa Alexis Alice Alicia Allison Alyssa
        Amanda Amber Amy Andre Andrea Andrew Angela Anita Ann Anthony Ariana Ashley Audrey
        Barbara Benjamin Beth Bianca Bill Blake Bobby Bonnie Brad Brandon Brenda Brent Brett
        Brian Brittany Brooke Bruce Caleb Calvin Cameron Carl Carla Carlos Carmen Carol
        Caroline Casey Cassandra Catherine Chad Charles Charlotte Chase Chelsea Cheryl Chloe
        Chris Christian Christina Cindy Claire Clayton Cody Colin Connor Courtney Craig
        Cristina Crystal Curtis Cynthia Dale Dana Daniel Danielle Darius Darren David Dawn
        Dean Deborah Denise Derek Desiree Devin Diana Diane Dominic Donald Donna Douglas
        Dustin Dylan Edward Elaine Elijah Elizabeth Ellen Emily Emma Eric Erica Erin Ethan
        Eugene Evan Felicia Frank Gabriel Gabrielle Gary Gavin George Gerald Gina Gloria
        Grace Grant Greg Gregory Hailey Haley Hannah Harold Heather Heidi Helen Henry Holly
        Hunter Ian Isaac Isabella Jack Jackie Jacob Jacqueline Jade Jaime Jake James Jamie
        Janet Janice Jared Jason Javier Jay Jeffrey Jenna Jennifer Jeremy Jerry Jesse
        Jessica Jill Joan Joanna Jocelyn Joel John Jon Jonathan Jordan Joseph Joshua Joy
        Judith Julia Julian Julie Justin Kaitlyn Karen Karina Kathleen Kathryn Katie Kayla
        Keith Kelly Kelsey Kendra Kenneth Kerry Kevin Kim Kirk Kristen Kristin Krystal Kyle
        Lance Larry Laura Lauren Leah Lee Leonard Leslie Lindsay Lindsey Lisa Logan Lori
        Louis Lucas Luis Luke Lydia Madison Malik Mallory Marc Marcus Margaret Maria Marie
        Mario Mark Marvin Mary Mason Matthew Maurice Megan Melanie Melissa Meredith Micheal
        Michelle Miguel Mike Miranda Mitchell Molly Monica Morgan Nancy Natalie Nathan
        Neil Nicole Noah Norma Olivia Omar Paige Pam Patricia Patrick Paul Paula Peggy
        Philip Phillip Preston Rachel Raymond Rebecca Regina Renee Ricardo Richard Ricky
        Riley Robert Robin Rodney Roger Ronald Ross Roy Russell Ruth Ryan Sabrina Samantha
        Samuel Sandra Sara Sarah Scott Sean Seth Shane Shannon Sharon Shawn Sheila Shelby
        Shirley Sierra Sonia Sophia Spencer Stacey Stephanie Stephen Steve Steven Sue
        Summer Susan Sydney Tamara Tammy Tanya Tara Taylor Teresa Terry Theresa Thomas
        Tiffany Timothy Tina Todd Tom Tommy Tony Tracy Travis Trevor Troy Tyler Valerie
        Vanessa Veronica Victor Victoria Vincent Walter Wanda Warren Wayne Wendy Whitney
        William Willie Xavier Yolanda Yvonne Zachary Zoe
        """.split()  # noqa: SIM905 - a word list reads better as text
    ),
    ("Zoë", "zoe"),
    ("José", "jose"),
    ("Chloé", "chloe"),
    ("Łukasz", "lukasz"),
    ("Björn", "bjorn"),
    ("Renée", "renee"),
    ("Anaïs", "anais"),
    ("Søren", "soren"),
]
LAST_NAMES = [
    *(
        (name, name.lower())
        for name in """
        Acevedo Acosta Adams Aguilar Alexander Allen Alvarado Andersen Anderson Andrews
        Archer Arellano Armstrong Arnold Atkins Austin Avila Bailey Baird Baker Baldwin
        Ball Banks Barajas Barber Barker Barnes Barrera Barry Bartlett Barton Bass Bates
        Bauer Beard Beck Becker Bell Benitez Bennett Benson Berg Berger Bernard Berry
        Best Bishop Black Blackburn Blair Blake Blevins Bolton Bond Booker Boone Bowen
        Bowers Boyd Boyle Bradford Bradley Brady Branch Brandt Bray Brennan Brewer Bridges
        Briggs Brock Brooks Brown Browning Bruce Bryan Bryant Buchanan Buck Buckley Burch
        Burgess Burke Burnett Burns Burton Bush Butler Byrd Cabrera Cain Calderon Caldwell
        Calhoun Callahan Camacho Cameron Campbell Cannon Cantrell Cantu Cardenas Carey
        Carlson Carpenter Carr Carroll Carson Carter Castaneda Castillo Castro Chambers
        Chan Chandler Chang Chapman Charles Chase Chavez Chen Cherry Christensen Church
        Clark Clarke Clay Clayton Clements Cline Cobb Cochran Coffey Cohen Cole Coleman
        Collier Collins Colon Combs Compton Conley Conner Conrad Contreras Conway Cook
        Cooke Cooper Copeland Cordova Cortez Costa Cox Craig Crane Crawford Cross Cruz
        Cummings Cunningham Curry Curtis Dalton Daniel Daniels Daugherty Davenport David
        Davidson Davies Davila Davis Dawson Day Dean Decker Delacruz Deleon Delgado Dennis
        Diaz Dickerson Dickson Dillon Dixon Dodson Dominguez Donovan Dorsey Dougherty
        Douglas Downs Doyle Drake Duarte Dudley Duffy Duke Duncan Dunlap Dunn Duran Durham
        Dyer Eaton Edwards Elliott Ellis Ellison Erickson Espinoza Estes Estrada Evans
        Everett Farley Farmer Farrell Faulkner Ferguson Fernandez Ferrell Fields Figueroa
        Finley Fischer Fisher Fitzgerald Fitzpatrick Fleming Fletcher Flores Flowers Floyd
        Flynn Foley Forbes Ford Foster Fowler Fox Francis Franco Frank Franklin Frazier
        Frederick Freeman Friedman Frost Fry Frye Fuentes Fuller Gaines Gallagher Gallegos
        Galloway Gamble Garcia Gardner Garner Garrett Garrison Garza Gates Gay Gentry
        George Gibbs Gibson Gilbert Giles Gill Gilmore Glass Glenn Glover Golden Gomez
        Gonzales Gonzalez Good Goodman Goodwin Gordon Gould Graham Grant Graves Gray Green
        Greene Greer Gregory Griffin Griffith Grimes Gross Guerra Guerrero Gutierrez Guzman
        Haas Hahn Hale Haley Hall Hamilton Hammond Hampton Hancock Hanna Hansen Hanson
        Hardin Harding Hardy Harmon Harper Harrell Harrington Harris Harrison Hart Hartman
        Harvey Hatfield Hawkins Hayden Hayes Haynes Hays Heath Hebert Henderson Hendricks
        Henry Hensley Henson Herman Hernandez Herrera Herring Hess Hester Hickman Hicks
        Higgins Hill Hines Hinton Hobbs Hodge Hodges Hoffman Hogan Holden Holder Holland
        Holloway Holmes Holt Hood Hooper Hoover Hopkins Horn Horne Horton House Houston
        Howard Howe Howell Huang Hubbard Huber Hudson Huff Huffman Hughes Hull Humphrey
        Hunt Hunter Hurley Hurst Hutchinson Huynh Ibarra Ingram Jackson Jacobs Jacobson
        James Jarvis Jefferson Jenkins Jennings Jensen Jimenez Johns Johnson Johnston
        Jones Jordan Joseph Joyce Juarez Kaiser Kane Kaufman Keith Keller Kelley Kelly
        Kemp Kennedy Kent Kerr Key Khan Kidd Kim King Kirby Kirk Klein Kline Knapp Knight
        Knox Koch Kramer Krause Krueger Lamb Lambert Landry Lane Lang Lara Larsen Larson
        Lawrence Lawson Le Leach Leblanc Lee Leon Leonard Lester Levine Levy Lewis Li
        Lin Lindsey Little Livingston Lloyd Logan Long Lopez Love Lowe Lowery Lucas Luna
        Lynch Lynn Lyons Macdonald Macias Mack Madden Maddox Mahoney Maldonado Malone Mann
        Manning Marks Marquez Marsh Marshall Martin Martinez Mason Massey Mata Mathews
        Mathis Matthews Maxwell May Mayer Maynard Mayo Mays Mcbride Mccall Mccann Mccarthy
        Mcclain Mcconnell Mccoy Mcdaniel Mcdonald Mcgee Mcguire Mckay Mckee Mckenzie
        Mclaughlin Mcmahon Mcpherson Meadows Medina Mejia Melendez Melton Mendez Mendoza
        Mercado Merritt Meyer Meyers Meza Michael Middleton Miles Miller Mills Miranda
        Mitchell Molina Monroe Montes Montgomery Montoya Moody Moon Mooney Moore Morales
        Moran Moreno Morgan Morris Morrison Morrow Morse Morton Moss Mueller Mullen Mullins
        Munoz Murillo Murphy Murray Myers Nash Navarro Neal Nelson Newman Newton Nguyen
        Nichols Nicholson Nielsen Nixon Noble Nolan Norman Norris Norton Novak Nunez
        Obrien Ochoa Oconnor Odom Oliver Olsen Olson Oneal Oneill Orozco Ortega Ortiz
        Osborne Owen Owens Pace Pacheco Padilla Page Palmer Park Parker Parks Parrish
        Parsons Patel Patrick Patterson Patton Paul Payne Pearson Peck Pena Pennington
        Perez Perkins Perry Peters Petersen Peterson Petty Pham Phelps Phillips Pierce
        Pineda Pittman Pitts Pollard Ponce Poole Pope Porter Potter Potts Powell Powers
        Pratt Preston Price Prince Pruitt Pugh Quinn Ramirez Ramos Ramsey Randall Randolph
        Rangel Rasmussen Ray Raymond Reed Reese Reeves Reid Reilly Reyes Reynolds Rhodes
        Rice Rich Richard Richards Richardson Richmond Riddle Riggs Riley Rios Rivas
        Rivera Roach Robbins Roberson Roberts Robertson Robinson Robles Rocha Rodgers
        Rodriguez Rogers Rojas Roman Romero Rosales Rosario Rose Ross Roth Rowe Rowland
        Roy Rubio Ruiz Rush Russell Russo Ryan Salas Salazar Salinas Sampson Sanchez
        Sanders Sandoval Sanford Santana Santiago Santos Saunders Savage Sawyer Schaefer
        Schmidt Schmitt Schneider Schroeder Schultz Schwartz Scott Sellers Serrano Sexton
        Shaffer Shannon Sharp Shaw Shea Shepard Shepherd Sheppard Sherman Shields Short
        Silva Simmons Simon Simpson Sims Singh Skinner Slater Sloan Small Smith Snow
        Snyder Solis Solomon Sosa Soto Sparks Spears Spence Spencer Stafford Stanley
        Stanton Stark Steele Stein Stephens Stephenson Stevens Stevenson Stewart Stokes
        Stone Stout Strickland Strong Stuart Suarez Sullivan Summers Sutton Swanson
        Sweeney Tanner Tate Taylor Terrell Terry Thomas Thompson Thornton Todd Torres
        Townsend Tran Travis Trevino Trujillo Tucker Turner Tyler Underwood Valdez
        Valencia Valentine Vance Vang Vargas Vasquez Vaughan Vaughn Vazquez Vega Velasquez
        Velez Villa Villanueva Vincent Wade Wagner Walker Wall Wallace Waller Walls Walsh
        Walter Walters Walton Wang Ward Ware Warner Warren Washington Waters Watkins Watson
        Watts Weaver Webb Weber Webster Welch Wells West Wheeler Whitaker White Whitehead
        Whitney Wiggins Wilcox Wiley Wilkerson Wilkins Wilkinson Williams Williamson Willis
        Wilson Winters Wise Wolf Wolfe Wong Wood Woodard Woods Woodward Wright Wu Wyatt
        Yang Yates Yoder York Young Yu Zamora Zavala Zhang Zimmerman Zuniga
        """.split()  # noqa: SIM905 - a word list reads better as text
    ),
    ("O'Brien", "obrien"),
    ("Müller", "muller"),
    ("Núñez", "nunez"),
    ("Søndergaard", "sondergaard"),
    ("Dvořák", "dvorak"),
]
COUNTRIES = """
Afghanistan|Albania|Algeria|American Samoa|Andorra|Angola|Anguilla|Antarctica (the territory
South of 60 deg S)|Antigua and Barbuda|Argentina|Armenia|Aruba|Australia|Austria|Azerbaijan|
Bahamas|Bahrain|Bangladesh|Barbados|Belarus|Belgium|Belize|Benin|Bermuda|Bhutan|Bolivia|
Bonaire, Sint Eustatius and Saba|Bosnia and Herzegovina|Botswana|Bouvet Island (Bouvetoya)|
Brazil|British Indian Ocean Territory (Chagos Archipelago)|British Virgin Islands|
Brunei Darussalam|Bulgaria|Burkina Faso|Burundi|Cambodia|Cameroon|Canada|Cape Verde|
Cayman Islands|Central African Republic|Chad|Chile|China|Christmas Island|
Cocos (Keeling) Islands|Colombia|Comoros|Congo|Cook Islands|Costa Rica|Cote d'Ivoire|Croatia|
Cuba|Curaçao|Cyprus|Czech Republic|Denmark|Djibouti|Dominica|Dominican Republic|Ecuador|Egypt|
El Salvador|Equatorial Guinea|Eritrea|Estonia|Ethiopia|Faroe Islands|
Falkland Islands (Malvinas)|Fiji|Finland|France|French Guiana|French Polynesia|
French Southern Territories|Gabon|Gambia|Georgia|Germany|Ghana|Gibraltar|Greece|Greenland|
Grenada|Guadeloupe|Guam|Guatemala|Guernsey|Guinea|Guinea-Bissau|Guyana|Haiti|
Heard Island and McDonald Islands|Holy See (Vatican City State)|Honduras|Hong Kong|Hungary|
Iceland|India|Indonesia|Iran|Iraq|Ireland|Isle of Man|Israel|Italy|Jamaica|Japan|Jersey|
Jordan|Kazakhstan|Kenya|Kiribati|Korea|Korea, Republic of|Kuwait|Kyrgyz Republic|Lao People's
Democratic Republic|Latvia|Lebanon|Lesotho|Liberia|Libyan Arab Jamahiriya|Liechtenstein|
Lithuania|Luxembourg|Macao|Madagascar|Malawi|Malaysia|Maldives|Mali|Malta|Marshall Islands|
Martinique|Mauritania|Mauritius|Mayotte|Mexico|Micronesia|Moldova|Monaco|Mongolia|Montenegro|
Montserrat|Morocco|Mozambique|Myanmar|Namibia|Nauru|Nepal|Netherlands|Netherlands Antilles|
New Caledonia|New Zealand|Nicaragua|Niger|Nigeria|Niue|Norfolk Island|North Macedonia|
Northern Mariana Islands|Norway|Oman|Pakistan|Palau|Palestinian Territory|Panama|
Papua New Guinea|Paraguay|Peru|Philippines|Pitcairn Islands|Poland|Portugal|Puerto Rico|Qatar|
Reunion|Romania|Russian Federation|Rwanda|Saint Barthelemy|Saint Helena|Saint Kitts and Nevis|
Saint Lucia|Saint Martin|Saint Pierre and Miquelon|Saint Vincent and the Grenadines|Samoa|
San Marino|Sao Tome and Principe|Saudi Arabia|Senegal|Serbia|Seychelles|Sierra Leone|
Singapore|Slovakia (Slovak Republic)|Slovenia|Solomon Islands|Somalia|South Africa|
South Georgia and the South Sandwich Islands|Spain|Sri Lanka|Sudan|Suriname|
Svalbard & Jan Mayen Islands|Swaziland|Sweden|Switzerland|Syrian Arab Republic|Taiwan|
Tajikistan|Tanzania|Thailand|Timor-Leste|Togo|Tokelau|Tonga|Trinidad and Tobago|Tunisia|
Turkey|Turkmenistan|Turks and Caicos Islands|Tuvalu|Uganda|Ukraine|United Arab Emirates|
United Kingdom|United States of America|United States Minor Outlying Islands|
United States Virgin Islands|Uruguay|Uzbekistan|Vanuatu|Venezuela|Vietnam|
Wallis and Futuna|Western Sahara|Yemen|Zambia|Zimbabwe|Åland Islands
"""
COUNTRIES = [" ".join(name.split()) for name in COUNTRIES.split("|")]
CITY_PREFIXES = ["East", "West", "North", "South", "New", "Port", "Lake", "Mount", "Fort", "Saint"]
CITY_SUFFIXES = [
    *("ville", "ton", "burgh", "borough", "side", "view", "haven", "mouth", "port", "field"),
    *(" Heights", " Springs", " Falls", " Park", " City", " Hills", " Harbor"),
]
COMPANY_SUFFIXES = ["Ltd", "LLC", "PLC", "Inc", "Group", "and Sons", "Corporation", "& Co."]
TLDS = ["com", "net", "org", "info", "biz", "io", "co.uk", "de"]
WORDS = """
a able about above access account across action active actually add address after again
against agency agent ago agree ahead air all allow almost alone along already also always
amount an analysis and annual another answer any anyone anything appear apply approach area
around arrive art article as ask assume at attention audience author available average avoid
away back bad balance bank base be beat because become before begin behind believe benefit
best better between beyond big bill billion bit blue board body book both box brand break
bring budget build building business but buy by call campaign can capital car card care
career carry case catch cause center central century certain chance change charge check
choice choose city claim clear client close coach code collect college color come common
community company compare computer concern condition consider consumer contact contain
continue contract control cost could country couple course court cover create credit
culture current customer cut data day deal decade decide deep degree delivery department
describe design detail develop difference direction discover discuss do door down draw
dream drive during each early east economy edge effect effort eight either else employee
end energy enjoy enough enter entire environment especially establish even evening event
ever every evidence exactly example executive exist expect experience expert explain eye
face fact factor fail fall family far fast feature feel few field figure file fill final
finally financial find fine finish firm first fish five floor fly focus follow food for
force foreign forget form former forward four free friend from front full fund future game
garden general generation get give glass go goal good great green ground group grow growth
guess hand happen happy hard have he head health hear heart heavy help her here high him
himself his history hit hold home hope hospital hot hotel hour house how however huge human
hundred idea identify if image imagine impact important improve in include increase indeed
industry information inside instead interest international into investment issue it item
its itself job join just keep key kind know knowledge land language large last late later
lead leader learn least leave left legal less let letter level life light like likely line
list listen little live local long look lose loss lot love low machine main maintain major
make manage management manager many market material matter may maybe me mean measure media
meet meeting member memory mention message method middle might million mind minute miss
model modern moment money month more morning most mother move much music must my myself
name nation natural near nearly need network never new news next nice night no none nor
north not note nothing notice now number occur of off offer office official often oil old
on once one only onto open operation opportunity option or order organization other others
our out outside over own owner page paper parent part partner party pass past pattern pay
peace people per perform perhaps period person personal phone pick picture piece place plan
plant play player point policy political popular population position positive possible
power practice prepare present president pressure pretty prevent price private probably
problem process produce product production professional program project property protect
prove provide public pull purpose push put quality question quickly quite range rate rather
reach read ready real reality realize really reason receive recent recently recognize record
reduce reflect region relate remain remember report represent require research resource
respond response rest result return reveal rich right rise risk road rock role room rule run
safe same save say scene school science score season seat second section security see seek
seem sell send senior sense series serious serve service set seven several share she short
should show side sign significant similar simple simply since single site situation six size
skill small so social society some someone something sometimes soon sort sound source south
space speak special specific spend spring staff stage stand standard star start state
statement station stay step still stock stop store story strategy street strong structure
student study stuff style subject success successful such suddenly suggest summer support
sure surface system table take talk task tax team technology tell ten tend term test than
thank that the their them themselves then theory there these they thing think third this
those though thought thousand three through throughout time to today together tonight too
top total toward town trade traditional training travel treat treatment tree trial trip
trouble true truth try turn two type under understand unit until up upon us use usually
value various very view visit voice wait walk wall want watch water way we weather week
weight well west what whatever when where whether which while white who whole whom whose
why wide wife will win window wish with within without woman wonder word work worker world
worry would write writer wrong yard yeah year yes yet you young your yourself café naïve
résumé Zürich São façade coöperate jalapeño piñata déjà vu
""".split()  # noqa: SIM905 - a word list reads better as text


@dataclass(frozen=True, slots=True)
class GenerateResult:
    rows: int  # data rows written, dirty ones included
    bad_rows: int  # rows the importer must reject
    bytes: int  # file size
    changed_rows: int = 0
    duplicate_rows: int = 0  # good rows that repeat an earlier good row's Customer Id


@dataclass(frozen=True, slots=True)
class _Pools:
    first: list[tuple[str, str]]
    last: list[tuple[str, str]]
    companies: list[str]
    cities: list[str]
    domains: list[str]
    dates: list[str]
    sentences: list[str]


@cache
def _pools() -> _Pools:
    rng = random.Random(POOL_SEED)
    pick = rng.choice
    surnames = [name for name, _ in LAST_NAMES]

    def company() -> str:
        a, b, c = rng.sample(surnames, 3)
        form = rng.randrange(6)
        if form == 0:
            return f"{a}, {b} and {c}"
        if form == 1:
            return f"{a}-{b}"
        if form == 2:
            return f"{a} and {b}"
        return f"{a} {pick(COMPANY_SUFFIXES)}"

    def city() -> str:
        base = pick(surnames if rng.random() < 0.5 else FIRST_NAMES)
        base = base if isinstance(base, str) else base[0]
        form = rng.randrange(3)
        if form == 0:
            return f"{pick(CITY_PREFIXES)} {base}"
        if form == 1:
            return base + pick(CITY_SUFFIXES)
        return base

    def domain() -> str:
        slug = pick(LAST_NAMES)[1]
        if rng.random() < 0.3:
            slug += "-" + pick(LAST_NAMES)[1]
        return f"{slug}.{pick(TLDS)}"

    def sentence() -> str:
        """60 to 120 characters: commas, a "quoted phrase", sometimes a paragraph break."""
        while True:
            words = rng.choices(WORDS, k=rng.randrange(9, 20))
            for i in range(1, len(words) - 1):
                if rng.random() < 0.12:
                    words[i] += ","
            if rng.random() < 0.2:
                i = rng.randrange(len(words) - 2)
                words[i] = '"' + words[i]
                words[i + 1] = words[i + 1].rstrip(",") + '"'
            text = " ".join(words)
            text = text[0].upper() + text[1:] + pick(".....!?")
            if 60 <= len(text) <= 120:
                return ("\n" if rng.random() < 0.025 else "") + text

    start = date(2020, 1, 1)
    return _Pools(
        first=FIRST_NAMES,
        last=LAST_NAMES,
        companies=[company() for _ in range(8192)],
        cities=sorted({city() for _ in range(3000)}),
        domains=[domain() for _ in range(8192)],
        dates=[(start + timedelta(days=n)).isoformat() for n in range(3 * 365 + 1)],
        sentences=[sentence() for _ in range(1 << SENTENCE_BITS)],
    )


# --- Ids and row selection ---------------------------------------------------------------
_MASK60 = (1 << 60) - 1
# Sixteen ways to mix the case of a-f, picked by the index: ids look like the sample's.
_ID_CASES = [
    str.maketrans(
        "abcdef", "".join(c.upper() if mask >> i & 1 else c for i, c in enumerate("abcdef"))
    )
    for mask in random.Random(POOL_SEED).sample(range(64), 16)
]


@cache
def _seed_key(seed: int) -> int:
    return int.from_bytes(hashlib.blake2b(str(seed).encode(), digest_size=8).digest()) & _MASK60


def customer_id(index: int, seed: int = 42) -> str:
    """15 mixed-case hex characters, like the sample's; a bijection of `index` for a seed."""
    x = (index + _seed_key(seed)) & _MASK60
    # Multiplying by an odd number and xor-shifting right are both invertible
    # modulo 2**60, so distinct indexes always give distinct ids.
    x = (x * 0x9E3779B97F4A7C1) & _MASK60
    x ^= x >> 29
    x = (x * 0xBF58476D1CE4E5B) & _MASK60
    x ^= x >> 32
    return f"{x:015x}".translate(_ID_CASES[index & 15])


def _basis_points(percent: float) -> int:
    return round(percent * 100)


def _selected(index: int, basis_points: int, phase: int) -> bool:
    """Exactly `basis_points` rows in every 10,000, evenly spaced (a Bresenham pattern)."""
    i = index + phase
    return i * basis_points // 10_000 != (i - 1) * basis_points // 10_000


def row_is_changed(index: int, change_percent: float) -> bool:
    return _selected(index, _basis_points(change_percent), 0)


def row_is_dirty(index: int, dirty_percent: float) -> bool:
    bp = _basis_points(dirty_percent)
    return _selected(index, bp, _dirty_phase(bp))


def _dirty_phase(basis_points: int) -> int:
    # Offset from the changed rows' pattern, so that the two seldom coincide.
    return 5_000 // basis_points + 3 if basis_points else 0


# --- Rows ----------------------------------------------------------------------------
def _about(rng: random.Random, sentences: list[str]) -> str:
    """800 to 1,000 characters of sentences, cut at a word boundary."""
    target = rng.randrange(ABOUT_MIN_CHARS + 20, ABOUT_MAX_CHARS + 1)
    pick = rng.getrandbits  # the pool holds 2**SENTENCE_BITS sentences
    text = " ".join([sentences[pick(SENTENCE_BITS)] for _ in range(17)]).strip()
    return text[: text.rfind(" ", 0, target)].rstrip(",") + "."


def _phone(r: int) -> str:
    a, b, c, ext = r % 1000, r // 1000 % 1000, r // 1000000 % 10000, r // 10000000000 % 100000
    form = r // 10000000000000000 % 6
    if form == 0:
        return f"{a:03d}.{b:03d}.{c:04d}"
    if form == 1:
        return f"+1-{a:03d}-{b:03d}-{c:04d}x{ext}"
    if form == 2:
        return f"({a:03d}){b:03d}-{c:04d}"
    if form == 3:
        return f"001-{a:03d}-{b:03d}-{c:04d}x{ext:05d}"
    if form == 4:
        return f"{a:03d}{b:03d}{c:04d}"
    return f"+1-{a:03d}-{b:03d}-{c:04d}"


def _dirty(fields: list, ordinal: int) -> list:
    """A corrupted copy of a good row; the kinds take turns."""
    kind = DIRTY_KINDS[ordinal % len(DIRTY_KINDS)]
    fields = list(fields)
    if kind == "invalid email":
        fields[9] = fields[9].replace("@", " at ")
    elif kind == "empty Customer Id":
        fields[1] = ""
    elif kind == "impossible date":
        fields[10] = f"{fields[10][:4]}-13-45"
    elif kind == "too many fields":
        fields.append("unexpected extra field")
    elif kind == "too few fields":
        del fields[-2:]
    else:
        fields[1] = (fields[1] * 5)[: CUSTOMER_ID_LIMIT + 11]
    return fields


def check_options(rows: int, change_percent: float, dirty_percent: float) -> None:
    """ValueError with a message for people when the arguments make no sense."""
    if rows < 1:
        raise ValueError(f"--rows must be at least 1 (got {rows}).")
    for name, value in (("change", change_percent), ("dirty", dirty_percent)):
        if not 0 <= value <= 100:
            raise ValueError(f"--{name}-percent must be between 0 and 100 (got {value:g}).")


def generate(
    path: str | os.PathLike,
    rows: int,
    *,
    seed: int = 42,
    change_percent: float = 0,
    dirty_percent: float = 0,
    messy: bool = False,
) -> GenerateResult:
    """Write `rows` customers to `path` (parents created; an existing file is replaced).

    The file appears under its name only once complete: it is written to a
    temporary sibling and renamed, so an interrupted run never leaves a short file.
    """
    check_options(rows, change_percent, dirty_percent)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    try:
        with partial.open("wb") as out:
            result = _write(out, rows, seed, change_percent, dirty_percent, messy)
        partial.replace(path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return result


def _csv_field(value: str) -> str:
    """The field as csv.writer's QUOTE_MINIMAL writes it, at a fraction of the cost."""
    if '"' in value:
        return '"' + value.replace('"', '""') + '"'
    if "," in value or "\n" in value or "\r" in value:
        return '"' + value + '"'
    return value


def _write(
    out: BinaryIO,
    rows: int,
    seed: int,
    change_percent: float,
    dirty_percent: float,
    messy: bool = False,
) -> GenerateResult:
    pools = _pools()
    first, last, companies, cities = pools.first, pools.last, pools.companies, pools.cities
    domains, dates, sentences = pools.domains, pools.dates, pools.sentences
    n_first, n_last, n_companies, n_cities = len(first), len(last), len(companies), len(cities)
    n_countries, n_domains, n_dates = len(COUNTRIES), len(domains), len(dates)
    rng = random.Random(seed)
    changes = random.Random(f"change-{seed}")
    r = rng.random
    bits = rng.getrandbits
    change_bp, dirty_bp = _basis_points(change_percent), _basis_points(dirty_percent)
    dirty_phase = _dirty_phase(dirty_bp)

    lines = [",".join(HEADER) + "\n"]
    size = bad = changed = duplicates = 0
    for index in range(1, rows + 1):
        given, given_slug = first[int(r() * n_first)]
        family, family_slug = last[int(r() * n_last)]
        style = bits(3)
        if style < 3:
            local = f"{given_slug}{family_slug}"
        elif style < 5:
            local = f"{given_slug[0]}{family_slug}"
        elif style < 7:
            local = f"{given_slug}.{family_slug}{bits(7)}"
        else:
            local = f"{family_slug}{given_slug[:3]}"
        phones = bits(64)
        website = domains[int(r() * n_domains)]
        fields = [
            str(index),
            customer_id(index, seed),
            given,
            family,
            companies[int(r() * n_companies)],
            cities[int(r() * n_cities)],
            COUNTRIES[int(r() * n_countries)],
            _phone(phones),
            _phone(phones >> 20 ^ phones << 17) if phones & 15 else "",
            f"{local}@{domains[int(r() * n_domains)]}",
            dates[int(r() * n_dates)],
            f"https://www.{website}/" if phones & 16 else f"http://{website}/",
            _about(rng, sentences),
        ]
        if change_bp and _selected(index, change_bp, 0):
            changed += 1
            city = fields[CITY]
            while city == fields[CITY]:
                city = cities[int(changes.random() * n_cities)]
            fields[CITY] = city
            about = fields[ABOUT]
            while about == fields[ABOUT]:
                about = _about(changes, sentences)
            fields[ABOUT] = about
        dirty = dirty_bp and _selected(index, dirty_bp, dirty_phase)
        if messy:
            if index % NEWLINE_EVERY == 0:
                about = fields[ABOUT]
                cut = about.find(". ") + 1 or len(about)
                fields[ABOUT] = f'{about[:cut]}\n"Noted," she wrote.\n{about[cut:].lstrip()}'
            if (
                index % DUPLICATE_EVERY == 0
                and not dirty
                and not (dirty_bp and _selected(index - 1, dirty_bp, dirty_phase))
            ):
                fields[1] = customer_id(index - 1, seed)
                duplicates += 1
        if dirty:
            fields = _dirty(fields, bad)
            bad += 1
        lines.append(",".join([_csv_field(value) for value in fields]) + "\n")
        if len(lines) >= FLUSH_ROWS:
            size += out.write("".join(lines).encode())
            lines.clear()
    size += out.write("".join(lines).encode())
    return GenerateResult(
        rows=rows, bad_rows=bad, bytes=size, changed_rows=changed, duplicate_rows=duplicates
    )
