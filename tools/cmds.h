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

#endif
