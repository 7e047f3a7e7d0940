# pochta - top-level build. GNU make, no autotools.
#
#   make              build every daemon and tool into $(BUILD)/bin
#   make test         unit tests, man page lint, integration tests
#   make test SANITIZE=1   the same, built with ASan and UBSan in build-san/
#   make run          a demo instance in ./run, in the foreground
#   make bench        benchmarks; figures printed, JSON in bench/results/
#   make install PREFIX=/usr/local DESTDIR=
#   make clean
# make, make run and make test first install missing Debian packages
# (mk/deps.sh).
#
# Sources are found by directory: lib/*.c is libpochta.a; each daemon
# directory builds one program named after it, whose main() is in
# <dir>/<dir>.c (the other files also go into a static library that its unit
# tests link); tools/pochta*.c is the pochta command. Unit tests are
# tests/unit/<dir>/<module>_test.c; an optional <module>_test.wrap beside one
# lists extra linker flags (-Wl,--wrap=...).

PREFIX     ?= /usr/local
SBINDIR    ?= $(PREFIX)/sbin
LIBEXECDIR ?= $(PREFIX)/libexec/pochta
SYSCONFDIR ?= $(PREFIX)/etc/pochta
MANDIR     ?= $(PREFIX)/share/man
DESTDIR    ?=

CC ?= gcc
ifeq ($(SANITIZE),1)
BUILD    ?= build-san
SANFLAGS := -fsanitize=address,undefined -fno-omit-frame-pointer \
	    -fno-sanitize-recover=undefined
OPT      := -O1
else
BUILD    ?= build
SANFLAGS :=
OPT      := -O2
endif

PKGS     := libuv ldns lmdb openssl libcrypt
CPPFLAGS += -D_GNU_SOURCE -Ilib \
	    -DPOCHTA_LIBEXECDIR='"$(LIBEXECDIR)"' \
	    -DPOCHTA_SYSCONFDIR='"$(SYSCONFDIR)"'
CFLAGS   += -std=c11 -Wall -Wextra -Werror $(OPT) -g $(SANFLAGS) \
	    $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
LDFLAGS  += $(SANFLAGS)
LDLIBS   += $(shell pkg-config --libs $(PKGS) 2>/dev/null)
TESTLIBS := $(shell pkg-config --libs cmocka 2>/dev/null)

# Install what is missing before anything else reads pkg-config.
ifeq ($(filter clean deps,$(MAKECMDGOALS)),)
DEPS_STATUS := $(shell sh mk/deps.sh ensure >&2; echo $$?)
ifneq ($(DEPS_STATUS),0)
$(error pochta: missing dependencies, see above)
endif
endif

DAEMONS  := master smtpd qmgr smtp-out local-deliver pop3d imapd
# Only daemons that have code yet.
BUILT_DAEMONS := $(foreach d,$(DAEMONS),$(if $(wildcard $(d)/$(d).c),$(d)))

LIB_SRCS := $(wildcard lib/*.c)
LIB_OBJS := $(LIB_SRCS:%.c=$(BUILD)/%.o)
LIBPOCHTA := $(BUILD)/libpochta.a

TOOL_SRCS := $(wildcard tools/pochta*.c)
TOOL_OBJS := $(TOOL_SRCS:%.c=$(BUILD)/%.o)

PROGS := $(BUILT_DAEMONS:%=$(BUILD)/bin/%) $(BUILD)/bin/pochta
BENCH_SRCS := $(wildcard bench/*.c)
BENCH_PROGS := $(BENCH_SRCS:bench/%.c=$(BUILD)/bench/%)

UNIT_SRCS  := $(wildcard tests/unit/*/*_test.c)
UNIT_PROGS := $(UNIT_SRCS:tests/unit/%.c=$(BUILD)/tests/%)

.PHONY: all test unit-test run bench install clean deps manlint
all: $(PROGS) $(BUILD)/bin/sendmail $(BUILD)/bin/mailq $(BENCH_PROGS)

deps:
	sh mk/deps.sh ensure

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) -I$(dir $<) -MMD -MP -c -o $@ $<

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)

$(LIBPOCHTA): $(LIB_OBJS)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

# One static library per daemon holding everything but its main file.
define daemon_rules
$(1)_SRCS := $$(filter-out $(1)/$(1).c,$$(wildcard $(1)/*.c))
$(1)_OBJS := $$($(1)_SRCS:%.c=$(BUILD)/%.o)
$(BUILD)/lib$(1).a: $$($(1)_OBJS)
	@mkdir -p $$(dir $$@)
	rm -f $$@ && ar rcs $$@ $$^
$(BUILD)/bin/$(1): $(BUILD)/$(1)/$(1).o $(BUILD)/lib$(1).a $(LIBPOCHTA)
	@mkdir -p $$(dir $$@)
	$$(CC) $$(LDFLAGS) -o $$@ $$^ $$(LDLIBS)
endef
$(foreach d,$(BUILT_DAEMONS),$(eval $(call daemon_rules,$(d))))

$(BUILD)/bin/pochta: $(TOOL_OBJS) $(LIBPOCHTA)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

# sendmail(1) compatibility: the same program, argv[0] decides.
$(BUILD)/bin/sendmail: $(BUILD)/bin/pochta
	ln -sf pochta $@

# mailq(1) compatibility: the queue listing, the same way.
$(BUILD)/bin/mailq: $(BUILD)/bin/pochta
	ln -sf pochta $@

$(BUILD)/bench/%: bench/%.c $(LIBPOCHTA)
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) $(LDFLAGS) -o $@ $^ $(LDLIBS)

# Unit tests: tests/unit/lib/x_test.c links libpochta; tests/unit/<daemon>/
# links that daemon's library too.
$(BUILD)/tests/%: tests/unit/%.c $(LIBPOCHTA) $(foreach d,$(BUILT_DAEMONS),$(BUILD)/lib$(d).a)
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) -I$(firstword $(subst /, ,$*)) $(CFLAGS) $(LDFLAGS) \
	    -o $@ $< \
	    $(if $(filter $(firstword $(subst /, ,$*)),$(BUILT_DAEMONS)),$(BUILD)/lib$(firstword $(subst /, ,$*)).a) \
	    $(LIBPOCHTA) \
	    $(shell cat tests/unit/$*.wrap 2>/dev/null) $(LDLIBS) $(TESTLIBS)

test: all $(UNIT_PROGS)
	python3 tests/run.py --build $(BUILD) $(if $(filter 1,$(SANITIZE)),--sanitize)

unit-test: all $(UNIT_PROGS)
	python3 tests/run.py --build $(BUILD) $(if $(filter 1,$(SANITIZE)),--sanitize) --only unit

manlint:
	python3 tests/run.py --build $(BUILD) --only man

run: all
	sh mk/run.sh $(BUILD)

bench: all
	sh bench/run.sh $(BUILD)

install: all
	install -d $(DESTDIR)$(SBINDIR) $(DESTDIR)$(LIBEXECDIR) \
	    $(DESTDIR)$(SYSCONFDIR) $(DESTDIR)$(MANDIR)/man5 \
	    $(DESTDIR)$(MANDIR)/man7 $(DESTDIR)$(MANDIR)/man8 \
	    $(DESTDIR)$(MANDIR)/man1
	install -m 755 $(BUILD)/bin/pochta $(DESTDIR)$(SBINDIR)/pochta
	ln -sf pochta $(DESTDIR)$(SBINDIR)/sendmail
	ln -sf pochta $(DESTDIR)$(SBINDIR)/mailq
	for p in $(BUILT_DAEMONS); do \
	    install -m 755 $(BUILD)/bin/$$p $(DESTDIR)$(LIBEXECDIR)/$$p; done
	for f in conf/*; do [ -e $(DESTDIR)$(SYSCONFDIR)/$${f#conf/} ] || \
	    install -m 644 $$f $(DESTDIR)$(SYSCONFDIR)/; done
	for m in man/*.[1-8]; do s=$${m##*.}; \
	    install -m 644 $$m $(DESTDIR)$(MANDIR)/man$$s/; done

clean:
	rm -rf build build-san build-*
