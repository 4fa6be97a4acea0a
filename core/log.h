/*
 * core/log.h — logging to stderr with a level and a component tag.
 *
 * fl_log(FL_LOG_INFO, "coord", "round %d committed", r). The level threshold
 * comes from fl_log_set_level() or the FEDLORA_LOG environment variable
 * (error, warn, info, debug). Never pass key material or other secrets: the
 * log is not a safe place for them. Thread-safe (one write per line).
 */
#ifndef FL_CORE_LOG_H
#define FL_CORE_LOG_H

enum { FL_LOG_ERROR = 0, FL_LOG_WARN = 1, FL_LOG_INFO = 2, FL_LOG_DEBUG = 3 };

void fl_log_set_level(int level);
int fl_log_level(void);
void fl_log(int level, const char *tag, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

#endif
