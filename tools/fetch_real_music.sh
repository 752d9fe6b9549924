#!/usr/bin/env bash
# fetch_real_music.sh - a small, freely licensed corpus of real music for checks on real audio.
#
# What it fetches: the soundtracks of 18 Debian "main" game/music packages (GPL-2+, GPL-3+,
# CC-BY-3.0, CC-BY-SA-3.0 or Expat, each checked against the package's own copyright file):
# 73 full pieces in orchestral/classical, death metal and guitar rock, electronic, ambient-like
# game scores, jazz, blues and more. See docs/real-music.md and the manifest below.
#
# How: `apt-get download` each package into a temporary folder, `dpkg -x` it there (nothing is
# installed system-wide), copy the chosen tracks (Frets on Fire songs ship as a backing stem and
# a guitar stem, mixed here into one song; two soundtracks sit in .pk3 zip archives), then delete
# the package and its extracted tree. About 1.26 GB of packages is downloaded in all, one package
# at a time; a full run took 2 to 5 minutes here (mostly download and decode checks).
#
# Writes: data/real-music/<source>/<file>, data/real-music/<source>/.copyright (the package's
# copyright file; hidden, so `pipelines.classify` skips it) and data/real-music/SOURCES.tsv
# (path relative to data/real-music, package, version, licence, author, duration_s, style, ...).
# data/ is git-ignored: the audio is NEVER committed.
#
# Idempotent: a track already on disk with its SOURCES.tsv row is kept; a package whose tracks
# are all there is not downloaded again. Each new track is fully decoded before it is recorded.
#
# Usage:
#   tools/fetch_real_music.sh            fetch what is missing (needs apt-get, dpkg, and a Python
#                                        with soundfile+numpy: .venv/bin/python, or set PYTHON)
#   tools/fetch_real_music.sh --list     print what would be fetched (sources, packages, sizes); no download
#   tools/fetch_real_music.sh --verify   decode every recorded track again and refresh durations
#   options: --dest DIR (default data/real-music), --only SOURCE[,SOURCE...]
# Run `apt-get update` once first if apt has no package lists (as root the script does it itself).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DEST="$REPO/data/real-music"
MODE=fetch
ONLY=""

while [[ $# -gt 0 ]]; do
  case "$1" in
    --list) MODE=list ;;
    --verify) MODE=verify ;;
    --dest) DEST="$2"; shift ;;
    --dest=*) DEST="${1#--dest=}" ;;
    --only) ONLY="$2"; shift ;;
    --only=*) ONLY="${1#--only=}" ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown option: $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done

# ---------------------------------------------------------------------------------------------
# Manifest (single-quoted shell strings: never put a ' inside). PACKAGES: source | Debian package | version checked | folder of the tracks inside the
# package | licence evidence: an extended regex that must occur in the package's copyright file,
# or "per-file" (DEP-5 stanzas: the track's file name must be listed and the first "License:"
# line after it must equal the track's licence).
PACKAGES='
wesnoth|wesnoth-1.16-music|1:1.16.9-1|usr/share/games/wesnoth/1.16/data/core/music|GNU General Public License version 2.*|or at your option any later version
fof-muldjord|fretsonfire-songs-muldjord|2.dfsg-2.1|usr/share/games/fretsonfire/data/songs/muldjord|Creative Commons\s+Attribution ShareAlike licence 3\.0
fof-sectoid|fretsonfire-songs-sectoid|1.dfsg-3.1|usr/share/games/fretsonfire/data/songs/sectoid|Permission is hereby granted, free of charge
nexuiz|nexuiz-music|2.5.2-12|usr/share/games/nexuiz/data|either version 2
singularity|singularity-music|007-2|usr/share/games/singularity/music|Attribution-ShareAlike 3\.0
warzone2100|warzone2100-music|4.3.3-3|usr/share/games/warzone2100/music/albums|^License: GPL-2\+
ufoai|ufoai-music|2.5-2|usr/share/games/ufoai/base|per-file
hedgewars|hedgewars-data|1.0.2-6|usr/share/games/hedgewars/Data/Music|^License: GPL-2$
supertux|supertux-data|0.6.3-2|usr/share/games/supertux2/music|^Files: data/music/\*\nCopyright: [^\n]*\nLicense: GPL-2\+
colobot|colobot-common-sounds|0.2.0-2|usr/share/games/colobot/music|^License: GPL-3\+
hyperrogue|hyperrogue-music|12.0q-1|usr/share/hyperrogue/music|per-file
xmoto|xmoto-data|0.6.1+repack-9|usr/share/games/xmoto/Textures/Musics|^License: GPL-2\+
extremetuxracer|extremetuxracer-data|0.8.2-1|usr/share/games/etr/music|^License: GPL-2\+
lincity-ng|lincity-ng-data|2.9~git20150314-5|usr/share/games/lincity-ng/music/default|^License: GPL-2\+
asc|asc-music|1.3-6|usr/share/games/asc/music|^License: GPL-2\+
pushover|pushover-data|0.0.5+git20180909-4|usr/share/pushover/themes|Roberto Lorenz \(Music|^License: GPL-3\+
frozen-bubble|frozen-bubble-data|2.212-11|usr/share/games/frozen-bubble/snd|^License: GPL-2$
funnyboat|funnyboat|1.5-11|usr/share/games/funnyboat/data|^Files: \*\.png\n\s+\*\.ogg\n(?:.*\n){0,4}License: Expat
'
# TRACKS: source | member (inside the folder above; "A.pk3!path" = a member of a zip archive;
# "dir/song.ogg+guitar.ogg" = the two stems mixed) | output file name | licence | style | where the
# style word comes from (tag = the file's own genre tag, title = its title, name = its file name)
# | author when the tags lack it (else the file's artist tag is used) | title when the tag's is wrong
# ("-": none; else the file's title tag, or the Frets on Fire song.ini name).
# Edits to licence/style/author/title here reach SOURCES.tsv with --verify, without a download.
# Style is left empty unless the package or the file itself states one: never guessed.
TRACKS='
wesnoth|battle.ogg|battle.ogg|GPL-2+|classical|tag|
wesnoth|breaking_the_chains.ogg|breaking_the_chains.ogg|GPL-2+|classical|tag|
wesnoth|casualties_of_war.ogg|casualties_of_war.ogg|GPL-2+|classical|tag|
wesnoth|knalgan_theme.ogg|knalgan_theme.ogg|GPL-2+|classical|tag|
wesnoth|traveling_minstrels.ogg|traveling_minstrels.ogg|GPL-2+|classical|tag|
wesnoth|the_dangerous_symphony.ogg|the_dangerous_symphony.ogg|GPL-2+|classical|tag|
wesnoth|nunc_dimittis.ogg|nunc_dimittis.ogg|GPL-2+|classical|tag|
wesnoth|loyalists.ogg|loyalists.ogg|GPL-2+|classical|tag|
fof-muldjord|armygeddon/song.ogg+guitar.ogg|armygeddon.ogg|CC-BY-SA-3.0|metal|tag|Muldjord (El Senator)
fof-muldjord|chaos_god/song.ogg+guitar.ogg|chaos_god.ogg|CC-BY-SA-3.0|metal|tag|Muldjord (El Senator)
fof-muldjord|internal_degeneration/song.ogg+guitar.ogg|internal_degeneration.ogg|CC-BY-SA-3.0|metal|tag|Muldjord (El Senator)
fof-muldjord|mutilated_mime/song.ogg+guitar.ogg|mutilated_mime.ogg|CC-BY-SA-3.0|metal|tag|Muldjord (El Senator)
fof-sectoid|Metal madness/song.ogg+guitar.ogg|metal_madness.ogg|Expat|metal|title|Sectoid (Carlos Viola Iborra)
fof-sectoid|Escape from chaosland/song.ogg+guitar.ogg|escape_from_chaosland.ogg|Expat|||Sectoid (Carlos Viola Iborra)
fof-sectoid|Feelings/song.ogg+guitar.ogg|feelings.ogg|Expat|||Sectoid (Carlos Viola Iborra)
fof-sectoid|War of freedom/song.ogg+guitar.ogg|war_of_freedom.ogg|Expat|||Sectoid (Carlos Viola Iborra)
nexuiz|music.pk3!sound/cdtracks/digital-pursuit.ogg|digital-pursuit.ogg|GPL-2+|electronic|tag|
nexuiz|music.pk3!sound/cdtracks/brainsukker.ogg|brainsukker.ogg|GPL-2+|||
nexuiz|music.pk3!sound/cdtracks/chaos-fog.ogg|chaos-fog.ogg|GPL-2+|||
nexuiz|music.pk3!sound/cdtracks/brokenlight.ogg|brokenlight.ogg|GPL-2+|||
nexuiz|music.pk3!sound/cdtracks/beast-of-insanity.ogg|beast-of-insanity.ogg|GPL-2+|||
nexuiz|music.pk3!sound/cdtracks/ninesix.ogg|ninesix.ogg|GPL-2+|||
singularity|A New Journey.ogg|a_new_journey.ogg|CC-BY-SA-3.0|||Max McCracken (Maxstack)
singularity|Advanced Simulacra.ogg|advanced_simulacra.ogg|CC-BY-SA-3.0|||Max McCracken (Maxstack)
singularity|Media Threat.ogg|media_threat.ogg|CC-BY-SA-3.0|||Max McCracken (Maxstack)
singularity|Awakening.ogg|awakening.ogg|CC-BY-SA-3.0|||Max McCracken (Maxstack)
warzone2100|original_soundtrack/track1.opus|original_track1.opus|GPL-2+|||Martin Severn
warzone2100|original_soundtrack/track2.opus|original_track2.opus|GPL-2+|||Martin Severn
warzone2100|legacy_soundtrack/track5.opus|legacy_track5.opus|GPL-2+|||LupusMechanicus
warzone2100|aftermath_soundtrack/track19.opus|aftermath_track19.opus|GPL-2+|||LupusMechanicus
ufoai|0music.pk3!music/van_theme.ogg|van_theme.ogg|CC-BY-3.0|||
ufoai|0music.pk3!music/van_mission2.ogg|van_mission2.ogg|CC-BY-3.0|||
ufoai|0music.pk3!music/karlmacklin_geoscape.ogg|karlmacklin_geoscape.ogg|CC-BY-3.0|||
ufoai|0music.pk3!music/David02.ogg|David02.ogg|CC-BY-3.0|||David Reeves (Destructavator)
ufoai|0music.pk3!music/Crystan-Geosphere04.ogg|Crystan-Geosphere04.ogg|CC-BY-SA-3.0|||Christian Hoffmann (Crystan)
ufoai|0music.pk3!music/TheThings-Slippycurb.ogg|TheThings-Slippycurb.ogg|CC-BY-SA-3.0|||
hedgewars|Castle.ogg|Castle.ogg|GPL-2|||
hedgewars|City.ogg|City.ogg|GPL-2|||
hedgewars|oriental.ogg|oriental.ogg|GPL-2|||
hedgewars|pirate.ogg|pirate.ogg|GPL-2|||
hedgewars|Nature.ogg|Nature.ogg|GPL-2|||
supertux|antarctic/airship_remix.ogg|airship_remix.ogg|GPL-2+|orchestral|title|
supertux|antarctic/chipdisko.ogg|chipdisko.ogg|GPL-2+|chiptune|title|
supertux|forest/call_of_the_winding_path.ogg|call_of_the_winding_path.ogg|GPL-2+|||
supertux|antarctic/arctic_cave.ogg|arctic_cave.ogg|GPL-2+|||
supertux|misc/christmas_theme.ogg|christmas_theme.ogg|GPL-2+|||
supertux|misc/battle_theme.ogg|battle_theme.ogg|GPL-2+|||
colobot|music013.ogg|music013.ogg|GPL-3+|jazz|title|
colobot|music002.ogg|music002.ogg|GPL-3+|||
colobot|music007.ogg|music007.ogg|GPL-3+|||
colobot|Infinite.ogg|Infinite.ogg|GPL-3+|||
colobot|Humanitarian.ogg|Humanitarian.ogg|GPL-3+|||
hyperrogue|hr3-hell.ogg|hr3-hell.ogg|CC-BY-SA-3.0|||Shawn Parrotte (NeonCorridor)|-
hyperrogue|hr3-rlyeh.ogg|hr3-rlyeh.ogg|CC-BY-SA-3.0|||Shawn Parrotte (NeonCorridor)|-
hyperrogue|hr-domina-mountain.ogg|hr-domina-mountain.ogg|CC-BY-SA-3.0|||Lincoln Domina
xmoto|batcave.ogg|batcave.ogg|GPL-2+|||
xmoto|menu.ogg|menu.ogg|GPL-2+|||
xmoto|foxrun.ogg|foxrun.ogg|GPL-2+|||
extremetuxracer|freezingpoint.ogg|freezingpoint.ogg|GPL-2+|||
extremetuxracer|spunkyrace-ks.ogg|spunkyrace-ks.ogg|GPL-2+|||
extremetuxracer|credits1-cp.ogg|credits1-cp.ogg|GPL-2+|ballad|title|
lincity-ng|01 - pronobozo - lincity.ogg|01_pronobozo_lincity.ogg|GPL-2+|||pronobozo
lincity-ng|02 - Robert van Herk - City Blues.ogg|02_robert_van_herk_city_blues.ogg|GPL-2+|blues|name|Robert van Herk
lincity-ng|03 - Robert van Herk - Architectural Contemplations.ogg|03_robert_van_herk_architectural_contemplations.ogg|GPL-2+|||Robert van Herk
asc|frontiers.mp3|frontiers.mp3|GPL-2+|||Michael Kievernagel
asc|time_to_strike.mp3|time_to_strike.mp3|GPL-2+|||Michael Kievernagel
asc|machine_wars.mp3|machine_wars.mp3|GPL-2+|||Michael Kievernagel
pushover|aztec.ogg|aztec.ogg|GPL-3+|||Roberto Lorenz
pushover|space.ogg|space.ogg|GPL-3+|||Roberto Lorenz
pushover|toxcity.ogg|toxcity.ogg|GPL-3+|||Roberto Lorenz
frozen-bubble|frozen-mainzik-1p.ogg|frozen-mainzik-1p.ogg|GPL-2|||
frozen-bubble|introzik.ogg|introzik.ogg|GPL-2|||
funnyboat|JDruid-Trip_on_the_Funny_Boat.ogg|trip_on_the_funny_boat.ogg|Expat|||Joona Karjalainen (JDruid)
'
# ---------------------------------------------------------------------------------------------

PYTHON="${PYTHON:-}"
if [[ -z "$PYTHON" ]]; then
  for cand in "$REPO/.venv/bin/python" python3; do
    if command -v "$cand" >/dev/null 2>&1 && "$cand" -c 'import soundfile, numpy' 2>/dev/null; then
      PYTHON="$cand"; break
    fi
  done
fi

WORK="$(mktemp -d "${TMPDIR:-/tmp}/fetch-real-music.XXXXXX")"
cleanup() { rm -rf "$WORK"; }
trap cleanup EXIT

printf '%s' "$PACKAGES" | sed '/^$/d' > "$WORK/packages.psv"
printf '%s' "$TRACKS" | sed '/^$/d' > "$WORK/tracks.psv"

# The helper does the per-track work: pending list, copy/mix/unzip, licence checks, decoding,
# SOURCES.tsv. It is written here so that the script stays one self-contained file.
cat > "$WORK/helper.py" <<'PY'
import csv, fnmatch, os, re, shutil, sys, zipfile

HEADER = ["path", "package", "version", "licence", "author", "duration_s", "style", "style_from", "title", "member"]


def load(work):
    pkgs, tracks = {}, []
    for line in open(os.path.join(work, "packages.psv"), encoding="utf-8"):
        src, pkg, ver, root, evidence = line.rstrip("\n").split("|", 4)
        pkgs[src] = dict(source=src, package=pkg, version=ver, root=root, evidence=evidence)
    for line in open(os.path.join(work, "tracks.psv"), encoding="utf-8"):
        f = line.rstrip("\n").split("|")
        f += [""] * (8 - len(f))
        tracks.append(dict(source=f[0], member=f[1], out=f[2], licence=f[3], style=f[4], style_from=f[5],
                           author=f[6], title=f[7]))
    return pkgs, tracks


def read_sources(dest):
    path = os.path.join(dest, "SOURCES.tsv")
    if not os.path.exists(path):
        return {}
    with open(path, encoding="utf-8", newline="") as fh:
        return {row["path"]: row for row in csv.DictReader(fh, delimiter="\t", quoting=csv.QUOTE_NONE)}


def write_sources(dest, rows):
    path = os.path.join(dest, "SOURCES.tsv")
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8", newline="") as fh:
        w = csv.DictWriter(fh, HEADER, delimiter="\t", lineterminator="\n", extrasaction="ignore",
                           quoting=csv.QUOTE_NONE)
        w.writeheader()
        for key in sorted(rows):  # plain TSV: no quoting, so no tab or newline inside a field
            w.writerow({k: re.sub(r"[\t\r\n]+", " ", str(rows[key].get(k) or "")) for k in HEADER})
    os.replace(tmp, path)


def rel(t):
    return f"{t['source']}/{t['out']}"


def selected(tracks, only):
    wanted = set(filter(None, only.split(",")))
    return [t for t in tracks if not wanted or t["source"] in wanted]


def decode(path):
    """Fully decode the file; returns (seconds, metadata). Raises on any decoding error."""
    import soundfile as sf
    frames = 0
    with sf.SoundFile(path) as f:
        sr = f.samplerate
        meta = f.copy_metadata()
        while True:
            block = f.read(65536, dtype="float32")
            if len(block) == 0:
                break
            frames += len(block)
    if frames == 0:
        raise RuntimeError("no audio frames decoded")
    return frames / sr, meta


def clean(value):
    value = (value or "").strip()
    return "" if value.lower() in {"", "<unknown>", "(none)", "unknown"} else value


def title_of(t, tagged):
    return "" if t["title"] == "-" else (t["title"] or tagged)


def licence_ok(pkg, track, copyright_text):
    if pkg["evidence"] != "per-file":
        return all(re.search(rx, copyright_text, re.M) for rx in pkg["evidence"].split("|"))
    base = os.path.basename(track["member"].split("!")[-1])
    lines = copyright_text.splitlines()
    for i, line in enumerate(lines):
        if re.search(r"(^|/)" + re.escape(base) + r"\s*$", line.strip()):
            for nxt in lines[i + 1:]:
                if nxt.startswith("License:"):
                    return nxt.split(":", 1)[1].strip() == track["licence"]
    return False


def mix(paths, out):
    import numpy as np
    import soundfile as sf
    stems = [sf.read(p, dtype="float32", always_2d=True) for p in paths]
    sr = stems[0][1]
    if any(s[1] != sr for s in stems):
        raise RuntimeError("stems differ in sample rate")
    n = min(len(s[0]) for s in stems)
    y = sum(s[0][:n] for s in stems)
    y /= max(1.0, float(np.abs(y).max()) / 0.98)  # peak-normalise only when the sum would clip
    with sf.SoundFile(paths[0]) as f0:
        meta = f0.copy_metadata()
    # libsndfile's Vorbis encoder can crash on one huge write: write in blocks.
    with sf.SoundFile(out, "w", sr, y.shape[1], format="OGG", subtype="VORBIS") as f:
        for k, v in meta.items():
            try:
                setattr(f, k, v)
            except Exception:
                pass
        for i in range(0, n, 32768):
            f.write(y[i:i + 32768])


def cmd_pending(work, dest, only):
    pkgs, tracks = load(work)
    rows = read_sources(dest)
    missing = []
    for t in selected(tracks, only):
        if not (os.path.exists(os.path.join(dest, rel(t))) and rel(t) in rows):
            if t["source"] not in missing:
                missing.append(t["source"])
    for s in missing:
        print(s, pkgs[s]["package"])


def cmd_install(work, dest, only, source, tree, version):
    pkgs, tracks = load(work)
    pkg = pkgs[source]
    rows = read_sources(dest)
    if version != pkg["version"]:
        print(f"  note: {pkg['package']} is now {version} (manifest checked {pkg['version']})", file=sys.stderr)
    cfile = os.path.join(tree, "usr/share/doc", pkg["package"], "copyright")
    copyright_text = open(cfile, encoding="utf-8", errors="replace").read()
    os.makedirs(os.path.join(dest, source), exist_ok=True)
    shutil.copyfile(cfile, os.path.join(dest, source, ".copyright"))
    root = os.path.join(tree, pkg["root"])
    archives = {}
    done = failed = 0
    for t in selected(tracks, only):
        if t["source"] != source:
            continue
        out = os.path.join(dest, rel(t))
        if os.path.exists(out) and rel(t) in rows:
            continue
        if not licence_ok(pkg, t, copyright_text):
            print(f"  SKIP {rel(t)}: licence {t['licence']} not confirmed by {pkg['package']}'s copyright file", file=sys.stderr)
            failed += 1
            continue
        tmp = out + ".part"
        title = ""
        try:
            if "!" in t["member"]:
                arch, member = t["member"].split("!", 1)
                z = archives.setdefault(arch, zipfile.ZipFile(os.path.join(root, arch)))
                with z.open(member) as src, open(tmp, "wb") as dst:
                    shutil.copyfileobj(src, dst)
            elif "+" in t["member"]:
                first, second = t["member"].split("+", 1)
                d = os.path.dirname(first)
                stems = [os.path.join(root, first), os.path.join(root, d, second)]
                ini = os.path.join(root, d, "song.ini")
                if os.path.exists(ini):
                    m = re.search(r"^name\s*=\s*(.+)$", open(ini, encoding="utf-8", errors="replace").read(), re.M)
                    title = m.group(1).strip() if m else ""
                mix(stems, tmp)
            else:
                shutil.copyfile(os.path.join(root, t["member"]), tmp)
            seconds, meta = decode(tmp)
        except Exception as e:  # a missing member after a package update, or a file that does not decode
            print(f"  SKIP {rel(t)}: {type(e).__name__}: {e}", file=sys.stderr)
            if os.path.exists(tmp):
                os.remove(tmp)
            failed += 1
            continue
        if seconds < 20:
            print(f"  SKIP {rel(t)}: only {seconds:.1f} s", file=sys.stderr)
            os.remove(tmp)
            failed += 1
            continue
        os.replace(tmp, out)
        rows[rel(t)] = dict(
            path=rel(t), package=pkg["package"], version=version, licence=t["licence"],
            author=t["author"] or clean(meta.get("artist")), duration_s=f"{seconds:.1f}",
            style=t["style"], style_from=t["style_from"], title=title_of(t, title or clean(meta.get("title"))),
            member=os.path.join(pkg["root"], t["member"]),
        )
        done += 1
        print(f"  + {rel(t)}  {seconds:6.1f} s  {t['licence']}  {t['style']}")
    write_sources(dest, rows)
    print(f"  {pkg['package']} {version}: {done} new track(s)" + (f", {failed} skipped" if failed else ""))
    return failed


def cmd_verify(work, dest, only):
    pkgs, tracks = load(work)
    rows = read_sources(dest)
    for t in tracks:  # carry manifest edits over
        r = rows.get(rel(t))
        if r:
            r.update(licence=t["licence"], style=t["style"], style_from=t["style_from"])
            r["author"] = t["author"] or r["author"]
            r["title"] = title_of(t, r["title"])
    bad = 0
    for key in sorted(rows):
        path = os.path.join(dest, key)
        try:
            seconds, _ = decode(path)
            rows[key]["duration_s"] = f"{seconds:.1f}"
        except Exception as e:
            print(f"  BAD {key}: {type(e).__name__}: {e}", file=sys.stderr)
            bad += 1
    write_sources(dest, rows)
    print(f"verified {len(rows) - bad}/{len(rows)} track(s) decode")
    return bad


def cmd_summary(work, dest, only):
    pkgs, tracks = load(work)
    rows = read_sources(dest)
    by_src, styles, secs = {}, {}, 0.0
    for r in rows.values():
        src = r["path"].split("/", 1)[0]
        by_src[src] = by_src.get(src, 0) + 1
        secs += float(r["duration_s"] or 0)
        if r["style"]:
            styles[r["style"]] = styles.get(r["style"], 0) + 1
    print(f"{len(rows)} track(s), {secs / 3600:.2f} h, {len(by_src)} source(s) in {dest}")
    print("  per source: " + ", ".join(f"{s} {n}" for s, n in sorted(by_src.items())))
    print("  style hints: " + (", ".join(f"{s} {n}" for s, n in sorted(styles.items())) or "none"))
    wanted = {rel(t) for t in selected(tracks, only)}
    lost = sorted(wanted - set(rows))
    if lost:
        print(f"  not fetched ({len(lost)}): " + ", ".join(lost))


def cmd_list(work, dest, only, sizes):
    pkgs, tracks = load(work)
    size = {}
    for line in sizes.splitlines():
        if "=" in line:
            k, v = line.split("=", 1)
            size[k] = int(v) if v.isdigit() else 0
    rows = read_sources(dest)
    sel = selected(tracks, only)
    total = 0
    print(f"{'source':16} {'package':28} {'version':22} {'MB':>6}  tracks (have/want)  licences")
    for s, p in pkgs.items():
        ts = [t for t in sel if t["source"] == s]
        if not ts:
            continue
        have = sum(1 for t in ts if rel(t) in rows and os.path.exists(os.path.join(dest, rel(t))))
        mb = size.get(p["package"], 0) / 1e6
        if have < len(ts):
            total += mb
        lic = ",".join(sorted({t["licence"] for t in ts}))
        print(f"{s:16} {p['package']:28} {p['version']:22} {mb:6.1f}  {have:3d}/{len(ts):<3d}              {lic}")
        for t in ts:
            mark = "have" if rel(t) in rows else "    "
            print(f"    {mark} {rel(t):58} {t['licence']:13} {t['style']}")
    print(f"to download: {total:.0f} MB of packages ({len(sel)} track(s) in the manifest, {sum(1 for t in sel if rel(t) in rows)} already here)")


if __name__ == "__main__":
    cmd, work, dest, only = sys.argv[1:5]
    rest = sys.argv[5:]
    rc = {"pending": cmd_pending, "install": cmd_install, "verify": cmd_verify,
          "summary": cmd_summary, "list": cmd_list}[cmd](work, dest, only, *rest)
    sys.exit(1 if rc else 0)
PY

run_helper() { "$PYTHON" "$WORK/helper.py" "$@"; }

# --list works without soundfile: it only needs a python3 for the table.
if [[ "$MODE" == list ]]; then
  mapfile -t pkgnames < <(cut -d'|' -f2 "$WORK/packages.psv")
  sizes="$(apt-cache show --no-all-versions "${pkgnames[@]}" 2>/dev/null \
           | awk '/^Package:/{p=$2} /^Size:/{print p "=" $2}')" || true
  "${PYTHON:-python3}" "$WORK/helper.py" list "$WORK" "$DEST" "$ONLY" "$sizes"
  exit 0
fi

if [[ -z "$PYTHON" ]]; then
  echo "no Python with soundfile+numpy found: create the project venv (.venv) or set PYTHON=..." >&2
  exit 1
fi
mkdir -p "$DEST"

if [[ "$MODE" == verify ]]; then
  run_helper verify "$WORK" "$DEST" "$ONLY"
  run_helper summary "$WORK" "$DEST" "$ONLY"
  exit 0
fi

for tool in apt-get apt-cache dpkg dpkg-deb; do
  command -v "$tool" >/dev/null || { echo "$tool is needed (Debian/Ubuntu)" >&2; exit 1; }
done

start=$SECONDS
mapfile -t pending < <(run_helper pending "$WORK" "$DEST" "$ONLY")
if [[ ${#pending[@]} -eq 0 ]]; then
  echo "all tracks already in $DEST"
  run_helper summary "$WORK" "$DEST" "$ONLY"
  exit 0
fi

# apt needs package lists; as root, fetch them once if the first package is unknown.
first_pkg="${pending[0]#* }"
if ! apt-cache show --no-all-versions "$first_pkg" >/dev/null 2>&1; then
  if [[ $EUID -eq 0 ]]; then apt-get update -qq; else
    echo "apt does not know $first_pkg: run 'apt-get update' (as root) first" >&2; exit 1; fi
fi

failures=0
for entry in "${pending[@]}"; do
  src="${entry%% *}"; pkg="${entry#* }"
  echo "== $src: $pkg"
  dl="$WORK/dl"; tree="$WORK/tree"
  rm -rf "$dl" "$tree"; mkdir -p "$dl" "$tree"
  # -o APT::Sandbox::User=root: the temp folder is root's; avoids apt's "unsandboxed" warning.
  if ! (cd "$dl" && apt-get download -qq -o APT::Sandbox::User=root "$pkg"); then
    echo "  download of $pkg failed" >&2; failures=$((failures + 1)); continue
  fi
  deb="$(ls "$dl"/*.deb)"
  section="$(dpkg-deb -f "$deb" Section)"
  if [[ "$section" == non-free/* || "$section" == contrib/* ]]; then
    echo "  $pkg is in $section: skipped (only Debian main)" >&2; failures=$((failures + 1)); rm -rf "$dl"; continue
  fi
  version="$(dpkg-deb -f "$deb" Version)"
  dpkg -x "$deb" "$tree"
  rm -rf "$dl"
  run_helper install "$WORK" "$DEST" "$ONLY" "$src" "$tree" "$version" || failures=$((failures + 1))
  rm -rf "$tree"
done

run_helper summary "$WORK" "$DEST" "$ONLY"
echo "done in $((SECONDS - start)) s"
[[ $failures -eq 0 ]] || { echo "$failures package(s) had problems (see above)" >&2; exit 1; }
