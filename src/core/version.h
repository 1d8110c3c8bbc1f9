/*
 * version.h - the release and git revision compiled into the binaries.
 *
 * The Makefile passes both with -D; the fallbacks keep a build by hand (or by an IDE's indexer)
 * compiling.
 */
#ifndef FULCRUM_VERSION_H
#define FULCRUM_VERSION_H

#ifndef FULCRUM_VERSION
#define FULCRUM_VERSION "0.0.0"
#endif
#ifndef FULCRUM_GIT_REV
#define FULCRUM_GIT_REV "unknown"
#endif

#endif
