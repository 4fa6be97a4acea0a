/*
 * tools/main.c — `fedlora`, one binary with subcommands.
 * Dispatches to tools/cmd_<name>.c; prints the command list on --help.
 */
#include <stdio.h>
#include <string.h>

#include "tools/cmds.h"

#define FEDLORA_VERSION "0.1.0"

static const struct {
	const char *name;
	int (*fn)(int, char **);
	const char *help;
} commands[] = {
    {"coordinator", cmd_coordinator, "run the coordinator of a federated run"},
    {"client", cmd_client, "join a run, train locally, submit signed updates"},
    {"sim", cmd_sim, "run a coordinator and N clients as local processes"},
    {"keygen", cmd_keygen, "write an Ed25519 key pair (NAME.key mode 0600, NAME.pub)"},
    {"eps", cmd_eps, "privacy accountant: epsilon of a DP-SGD schedule, or sigma for a target"},
    {"pretrain", cmd_pretrain, "train a base model from scratch (Hugging Face layout)"},
    {"eval", cmd_eval, "held-out loss and accuracy of a base model with an optional adapter"},
    {"export", cmd_export, "write a run's global adapter in the PEFT format"},
    {"tokenize", cmd_tokenize, "encode or decode text with a model folder's tokenizer"},
};

static void usage(FILE *f)
{
	fprintf(f,
	        "fedlora %s — federated LoRA fine-tuning\n\n"
	        "usage: fedlora COMMAND [OPTIONS]   (fedlora COMMAND --help for its options)\n\n"
	        "commands:\n",
	        FEDLORA_VERSION);
	for (unsigned i = 0; i < sizeof commands / sizeof commands[0]; i++)
		fprintf(f, "  %-12s %s\n", commands[i].name, commands[i].help);
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		usage(stderr);
		return 2;
	}
	if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
		usage(stdout);
		return 0;
	}
	if (!strcmp(argv[1], "--version")) {
		printf("fedlora %s\n", FEDLORA_VERSION);
		return 0;
	}
	for (unsigned i = 0; i < sizeof commands / sizeof commands[0]; i++)
		if (!strcmp(argv[1], commands[i].name))
			return commands[i].fn(argc - 1, argv + 1);
	fprintf(stderr, "fedlora: unknown command '%s'\n\n", argv[1]);
	usage(stderr);
	return 2;
}
