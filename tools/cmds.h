/*
 * tools/cmds.h — the subcommands of the `fedlora` binary.
 *
 * Each lives in tools/cmd_<name>.c as `int cmd_<name>(int argc, char **argv)`
 * with argv[0] the subcommand's name; it returns the process exit status
 * (0 ok, 1 failure, 2 usage error) and answers --help. Only tools/ may exit.
 */
#ifndef FL_TOOLS_CMDS_H
#define FL_TOOLS_CMDS_H

int cmd_coordinator(int argc, char **argv);
int cmd_client(int argc, char **argv);
int cmd_keygen(int argc, char **argv);
int cmd_sim(int argc, char **argv);
int cmd_eps(int argc, char **argv);
int cmd_pretrain(int argc, char **argv);
int cmd_eval(int argc, char **argv);
int cmd_export(int argc, char **argv);
int cmd_tokenize(int argc, char **argv);

struct priv_phase;
/* `fedlora eps --history FILE`: reads and checks the phases of FILE (a JSON
 * list of {"sigma","q","steps"}, or an object with such a list under
 * "accountant" or "history"; untrusted: size and phase count bounded, every
 * field checked). *ph is malloc'd (caller frees; NULL when n is 0). Prints
 * the reason to stderr and returns -1 on failure. */
int eps_history_read(const char *path, struct priv_phase **ph, int *n);

#endif
