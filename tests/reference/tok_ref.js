#!/usr/bin/env node
// tests/reference/tok_ref.js — reference ids from Hugging Face `tokenizers`
// (the Rust library through its Node binding, npm package `tokenizers`).
//
//   NODE_PATH=/tmp/tokref/node_modules node tests/reference/tok_ref.js \
//       DIR/tokenizer.json CORPUS OUT [--special] [--bos]
//
// Encodes CORPUS line by line (split on "\n"; lines decoded as UTF-8 with
// U+FFFD for invalid bytes, as JavaScript does: the reference takes only
// valid strings) and writes one line of space-separated ids per input line
// to OUT, "!" for lines that are not valid UTF-8 (tok_parity.sh checks those
// by round trip only). Without --bos no post-processor tokens are added.
// Prints one JSON line with bytes, lines, seconds and MB/s of the encode
// calls alone (file read and output excluded; one thread).
const fs = require('fs');
const { Tokenizer } = require('tokenizers');

async function main() {
	const [tokPath, corpus, out, ...flags] = process.argv.slice(2);
	const special = flags.includes('--special');
	const bos = flags.includes('--bos');
	const tok = Tokenizer.fromFile(tokPath);
	const raw = fs.readFileSync(corpus);
	const lines = [];
	let start = 0;
	for (let i = 0; i <= raw.length; i++) {
		if (i === raw.length || raw[i] === 10) {
			if (i === raw.length && start === i) break;
			lines.push(raw.subarray(start, i));
			start = i + 1;
		}
	}
	const dec = new TextDecoder('utf-8', { fatal: true });
	const texts = lines.map((b) => {
		try {
			return dec.decode(b);
		} catch (e) {
			return null;
		}
	});
	const res = new Array(texts.length);
	const t0 = process.hrtime.bigint();
	for (let i = 0; i < texts.length; i++) {
		if (texts[i] === null) continue;
		// encode(sequence, pair, options); tokenizers >= 0.15 takes an options object
		const enc = await tok.encode(texts[i], null, { addSpecialTokens: bos });
		res[i] = enc.getIds();
	}
	const t1 = process.hrtime.bigint();
	void special; // the reference always recognises added tokens (fedlora --special)
	const outl = [];
	for (let i = 0; i < texts.length; i++) outl.push(texts[i] === null ? '!' : res[i].join(' '));
	fs.writeFileSync(out, outl.join('\n') + '\n');
	const s = Number(t1 - t0) / 1e9;
	console.log(JSON.stringify({ bytes: raw.length, lines: lines.length, seconds: s, mb_s: raw.length / 1e6 / s }));
}
main().catch((e) => {
	console.error(e);
	process.exit(1);
});
