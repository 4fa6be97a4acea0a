#!/usr/bin/env node
// tests/reference/tok_expected.js — writes tests/fixtures/tok/expected.json:
// the Hugging Face `tokenizers` ids (npm `tokenizers`, the Rust library) of
// every text in cases.json for every fixture folder, without special tokens
// added (added tokens in the text are recognised) and with them ("bos"), and
// the reference decode of the first ("decoded", special tokens kept).
//
//   NODE_PATH=/tmp/tokref/node_modules node tests/reference/tok_expected.js tests/fixtures/tok
const fs = require('fs');
const path = require('path');
const { Tokenizer } = require('tokenizers');

async function main() {
	const dir = process.argv[2];
	const cases = JSON.parse(fs.readFileSync(path.join(dir, 'cases.json'), 'utf8'));
	const out = {};
	for (const m of ['bytebpe', 'spbpe', 'metabpe', 'gpt2bpe', 'splitbpe', 'flagbpe', 'flagsp', 'flagmeta']) {
		const tok = Tokenizer.fromFile(path.join(dir, m, 'tokenizer.json'));
		out[m] = [];
		for (const text of cases) {
			const plain = await tok.encode(text, null, { addSpecialTokens: false });
			const bos = await tok.encode(text, null, { addSpecialTokens: true });
			const decoded = await tok.decode(plain.getIds(), false);
			out[m].push({ text, ids: plain.getIds(), bos: bos.getIds(), decoded });
		}
	}
	fs.writeFileSync(path.join(dir, 'expected.json'), JSON.stringify(out) + '\n');
}
main().catch((e) => {
	console.error(e);
	process.exit(1);
});
