#!/usr/bin/env python3
"""Chat-template parity: renders every template in tests/chat/*.jinja on every
conversation of tests/chat/conversations.json with Jinja2 set up exactly as
transformers' apply_chat_template sets it up (ImmutableSandboxedEnvironment,
trim_blocks, lstrip_blocks, raise_exception, tojson), and with fedlora's
interpreter (build/tests/chat_test --render), and compares the two texts.
A template that raises must make fedlora fail too. Prints PASS/FAIL per pair
and exits 1 on any FAIL.

  python3 tests/reference/chat_parity.py            # compare
  python3 tests/reference/chat_parity.py --write    # (re)write tests/chat/expected.json
"""
import glob, json, os, subprocess, sys

import jinja2
from jinja2.sandbox import ImmutableSandboxedEnvironment

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CHAT = os.path.join(ROOT, "tests", "chat")
BIN = os.environ.get("CHAT_TEST", os.path.join(ROOT, "build", "tests", "chat_test"))
BOS, EOS = "<s>", "</s>"


def raise_exception(msg):
    raise jinja2.exceptions.TemplateError(msg)


def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators,
                      sort_keys=sort_keys)


def hf_render(tmpl, conv):
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    try:
        return env.from_string(tmpl).render(messages=conv["messages"], bos_token=BOS,
                                            eos_token=EOS,
                                            add_generation_prompt=conv["add_generation_prompt"])
    except jinja2.exceptions.TemplateError:
        return None


def fedlora_render(path, conv):
    r = subprocess.run([BIN, "--render", path, json.dumps(conv["messages"]), BOS, EOS,
                        "1" if conv["add_generation_prompt"] else "0"],
                       capture_output=True)
    return r.stdout.decode("utf-8") if r.returncode == 0 else None


def main():
    convs = json.load(open(os.path.join(CHAT, "conversations.json")))
    expected, bad = {}, 0
    for path in sorted(glob.glob(os.path.join(CHAT, "*.jinja"))):
        name = os.path.basename(path)[:-6]
        tmpl = open(path).read()
        expected[name] = {}
        for conv in convs:
            ref = hf_render(tmpl, conv)
            expected[name][conv["name"]] = ref
            if "--write" in sys.argv:
                continue
            got = fedlora_render(path, conv)
            ok = got == ref
            bad += not ok
            print(f"{'PASS' if ok else 'FAIL'} {name} {conv['name']}"
                  + ("" if ok else f"\n  jinja2:  {ref!r}\n  fedlora: {got!r}"))
    if "--write" in sys.argv:
        with open(os.path.join(CHAT, "expected.json"), "w") as f:
            json.dump(expected, f, indent=1, ensure_ascii=False)
            f.write("\n")
        print("wrote tests/chat/expected.json")
        return 0
    print(f"chat_parity: {'PASS' if not bad else 'FAIL'} ({bad} mismatches)")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
