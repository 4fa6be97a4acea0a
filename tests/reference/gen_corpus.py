#!/usr/bin/env python3
"""tests/reference/gen_corpus.py — a generated multilingual corpus for the
tokenizer parity check (tests/reference/tok_parity.sh), not a vendored text.

    python3 tests/reference/gen_corpus.py OUT [MB] [SEED]

Writes about MB megabytes (default 4) of lines mixing English, German,
French, Spanish, Russian, Greek, Chinese, Japanese, Korean, Arabic, Hebrew,
Hindi, Thai, emoji (with skin tones, ZWJ sequences and flags), combining
marks (NFC and NFD forms), numbers, code, URLs, contractions in mixed case,
long whitespace runs (spaces, tabs, CR, NBSP, ideographic space, NEL), and
one line in 50 of invalid UTF-8 bytes. Deterministic for a seed.
"""
import random
import sys

WORDS = {
    "en": "the quick brown fox jumps over lazy dog federated learning privacy budget "
          "gradient adapter language model token rounds clients server noise clipping "
          "I'm you're they've we'll she'd it's don't CAN'T Won'T O'Neill".split(),
    "de": "Grüße aus München über Straße Fußgängerübergang Äpfel Öl Übung größer "
          "Datenschutz Sprachmodell Bundesverfassungsgericht schön heißt".split(),
    "fr": "élève café naïve œuvre garçon où déjà français très été Noël".split(),
    "es": "niño mañana corazón canción señor pingüino acción años".split(),
    "ru": "привет мир федеративное обучение приватность модель ёжик съешь".split(),
    "el": "Καλημέρα κόσμε ομοσπονδιακή μάθηση ιδιωτικότητα ψυχή".split(),
    "zh": ["联邦学习", "隐私预算", "语言模型", "你好世界", "机器学习", "数据", "服务器", "客户端", "梯度"],
    "ja": ["こんにちは", "世界", "連合学習", "プライバシー", "トークナイザー", "日本語のテキスト", "カタカナ", "ｶﾀｶﾅ"],
    "ko": ["안녕하세요", "세계", "연합", "학습", "개인정보", "모델", "한국어"],
    "ar": "مرحبا بالعالم التعلم الموحد الخصوصية نموذج اللغة العربية".split(),
    "he": "שלום עולם למידה פרטיות מודל".split(),
    "hi": "नमस्ते दुनिया संघीय शिक्षा गोपनीयता भाषा मॉडल हिन्दी क्षत्रिय".split(),
    "th": ["สวัสดีชาวโลก", "การเรียนรู้", "ความเป็นส่วนตัว", "ภาษาไทย"],
}
EMOJI = ["😀", "👍🏽", "👩‍💻", "👨‍👩‍👧‍👦", "🏳️‍🌈", "🇩🇪", "🇯🇵", "❤️", "🤖", "🧑🏿‍🚀", "✊🏻", "🫠", "1️⃣"]
COMBINING = ["e\u0301", "a\u0308", "n\u0303", "o\u0302\u0323", "A\u030a", "\u1100\u1161\u11a8",
             "Å", "é", "ﬁ", "Ⅻ", "x\u0336y\u0336", "z\u0351\u0352\u0353"]
CODE = ["def f(x):\n", "    return x**2 + 1", "int main(void) { return 0; }", "for (i = 0; i < n; i++)",
        "a->b[c] = d ? e : f;", "console.log(`${x}`);", "#include <stdio.h>", "SELECT * FROM t WHERE id=42;",
        "https://example.com/path?q=1&r=two#frag", "user@example.org", "0x1F600", "C:\\Users\\x",
        "{\"key\": [1, 2.5e-3, null, true]}", "<|im_end|>", "<s>", "</s>", "<|begin_of_text|>", "<think>"]
SPACES = [" ", "  ", "   ", "\t", "\t\t", "        ", " \u00a0 ", "\u3000", "\u2003", "\r", " \u0085 ", "\u200b"]


def number(r):
    k = r.random()
    if k < 0.3:
        return str(r.randint(0, 9))
    if k < 0.6:
        return str(r.randint(0, 10 ** r.randint(2, 12)))
    if k < 0.8:
        return f"{r.uniform(-1e6, 1e6):.{r.randint(0, 6)}f}"
    return r.choice(["٣٤٥", "१२३", "１２３", "½", "²", "2024-12-06", "3.14159", "1,000,000"])


def line(r):
    parts = []
    langs = list(WORDS)
    main = r.choice(langs)
    for _ in range(r.randint(1, 40)):
        k = r.random()
        if k < 0.62:
            w = r.choice(WORDS[main if r.random() < 0.8 else r.choice(langs)])
            if r.random() < 0.1:
                w = w.upper() if r.random() < 0.5 else w.capitalize()
            parts.append(w)
        elif k < 0.70:
            parts.append(number(r))
        elif k < 0.76:
            parts.append(r.choice(EMOJI) * r.randint(1, 3))
        elif k < 0.81:
            parts.append(r.choice(COMBINING))
        elif k < 0.86:
            parts.append(r.choice(CODE))
        elif k < 0.93:
            parts.append(r.choice(".,;:!?-—…()[]{}\"'«»„“”'/\\|@#$%^&*_+=~`"))
        else:
            parts.append(r.choice(SPACES) * r.randint(1, 20))
        parts.append(" " if r.random() < 0.85 else r.choice(SPACES))
    s = "".join(parts)
    if r.random() < 0.05:
        s = " " * r.randint(1, 200) + s
    if r.random() < 0.05:
        s = s + " " * r.randint(1, 50)
    return s.replace("\n", " ")


def bad_line(r):
    b = bytearray(line(r).encode())
    for _ in range(r.randint(1, 5)):
        pos = r.randint(0, len(b))
        junk = r.choice([b"\xff", b"\xc3", b"\xe6\x97", b"\xed\xa0\x80", b"\xf0\x9f\x98", b"\x80\x80",
                         b"\xc0\xaf", b"\xfe\xfe", bytes([r.randint(0x80, 0xff)])])
        b[pos:pos] = junk
    return bytes(b).replace(b"\n", b" ")


def main():
    out = sys.argv[1]
    mb = float(sys.argv[2]) if len(sys.argv) > 2 else 4.0
    r = random.Random(int(sys.argv[3]) if len(sys.argv) > 3 else 1)
    total, target = 0, int(mb * 1e6)
    with open(out, "wb") as f:
        while total < target:
            b = bad_line(r) if r.random() < 0.02 else line(r).encode()
            if r.random() < 0.01:
                b = b""
            f.write(b + b"\n")
            total += len(b) + 1


if __name__ == "__main__":
    main()
