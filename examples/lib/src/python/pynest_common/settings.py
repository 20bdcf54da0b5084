"""A tiny settings file format: `key = value` lines, `#` comments."""


def parse_settings(text):
    settings = {}
    for lineno, line in enumerate(text.splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        key, sep, value = line.partition("=")
        if not sep or not key.strip():
            raise ValueError("line %d: expected key = value" % lineno)
        settings[key.strip()] = value.strip()
    return settings


def load_settings(path):
    with open(path, encoding="utf-8") as f:
        return parse_settings(f.read())


def save_settings(path, settings):
    with open(path, "w", encoding="utf-8") as f:
        for key in sorted(settings):
            f.write("%s = %s\n" % (key, settings[key]))
