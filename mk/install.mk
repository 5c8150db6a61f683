# install.mk - make install / make uninstall, and the test of both.
#
#   make install [PREFIX=/usr/local] [DESTDIR=...]
#       the library (libthpfs.a, libthpfs.so.$(VERSION) with SONAME
#       libthpfs.so.$(SOMAJOR) and the links libthpfs.so.$(SOMAJOR),
#       libthpfs.so), include/thpfs.h, thpfs.pc (written for this PREFIX by
#       every install), the programs thpfs, thpfs-stat, thpfs-balloon, the
#       mount helper mount.fuse.thpfs and the man pages.
#   make uninstall [PREFIX=...]   removes exactly those files
#   make test-install             tests/install/run.sh (root: it mounts)
#
# The mount helper runs $(BINDIR)/thpfs.  mount(8) looks for helpers in
# /sbin only, a directory every install shares: the helper goes there when
# PREFIX is /usr or /usr/local (the system's own install) or when
# MOUNT_HELPER_DIR is given; with any other PREFIX it stays in
# $(PREFIX)/sbin and the install prints the `ln -s` that puts it into /sbin.
# A helper already there that runs another install's thpfs (its THPFS= line
# names another BINDIR) is neither replaced by install nor removed by
# uninstall: each says so.
BINDIR ?= $(PREFIX)/bin
LIBDIR ?= $(PREFIX)/lib
INCLUDEDIR ?= $(PREFIX)/include
MANDIR ?= $(PREFIX)/share/man
ifeq ($(origin MOUNT_HELPER_DIR),undefined)
ifneq ($(filter /usr /usr/ /usr/local /usr/local/,$(PREFIX)),)
MOUNT_HELPER_DIR := /sbin
else
MOUNT_HELPER_DIR := $(PREFIX)/sbin
endif
endif
HELPER := $(DESTDIR)$(MOUNT_HELPER_DIR)/mount.fuse.thpfs
HELPER_LINE := THPFS=$(BINDIR)/thpfs
INSTALL_PROGS := thpfs thpfs-stat thpfs-balloon
INSTALL_MAN1 := man/thpfs.1 man/thpfs-stat.1 man/thpfs-balloon.1
INSTALL_MAN8 := man/mount.fuse.thpfs.8

.PHONY: install uninstall test-install

install: lib tools
	install -d $(DESTDIR)$(LIBDIR)/pkgconfig $(DESTDIR)$(INCLUDEDIR) $(DESTDIR)$(BINDIR) \
		$(DESTDIR)$(MANDIR)/man1 $(DESTDIR)$(MANDIR)/man8 $(DESTDIR)$(MOUNT_HELPER_DIR)
	install -m 644 $(B)/libthpfs.a $(DESTDIR)$(LIBDIR)/
	install -m 755 $(B)/libthpfs.so.$(VERSION) $(DESTDIR)$(LIBDIR)/
	ln -sf libthpfs.so.$(VERSION) $(DESTDIR)$(LIBDIR)/libthpfs.so.$(SOMAJOR)
	ln -sf libthpfs.so.$(SOMAJOR) $(DESTDIR)$(LIBDIR)/libthpfs.so
	install -m 644 include/thpfs.h $(DESTDIR)$(INCLUDEDIR)/
	sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@LIBDIR@|$(LIBDIR)|' -e 's|@INCLUDEDIR@|$(INCLUDEDIR)|' \
		-e 's|@VERSION@|$(VERSION)|' thpfs.pc.in > $(DESTDIR)$(LIBDIR)/pkgconfig/thpfs.pc
	install -m 755 $(addprefix $(B)/,$(INSTALL_PROGS)) $(DESTDIR)$(BINDIR)/
	@if [ -e '$(HELPER)' ] && ! grep -qx '$(HELPER_LINE)' '$(HELPER)'; then \
		echo "make install: $(HELPER) belongs to another install" \
			"($$(sed -n 's/^THPFS=//p' '$(HELPER)' | head -1)): not replaced;" \
			"remove it first, or give MOUNT_HELPER_DIR=DIR" >&2; \
	else \
		sed -e 's|@BINDIR@|$(BINDIR)|' tools/mount.fuse.thpfs.in > '$(HELPER)' && \
		chmod 755 '$(HELPER)'; \
	fi
	install -m 644 $(INSTALL_MAN1) $(DESTDIR)$(MANDIR)/man1/
	install -m 644 $(INSTALL_MAN8) $(DESTDIR)$(MANDIR)/man8/
	@echo "installed in $(DESTDIR)$(PREFIX); if $(LIBDIR) is not in the loader's path," \
		"run ldconfig or link with -Wl,-rpath,$(LIBDIR) (README: Install)"
	@if [ '$(MOUNT_HELPER_DIR)' != /sbin ]; then \
		echo "mount -t fuse.thpfs and fstab need the helper in /sbin: as root," \
			"ln -s $(MOUNT_HELPER_DIR)/mount.fuse.thpfs /sbin/mount.fuse.thpfs"; \
	fi

uninstall:
	rm -f $(DESTDIR)$(LIBDIR)/libthpfs.a $(DESTDIR)$(LIBDIR)/libthpfs.so \
		$(DESTDIR)$(LIBDIR)/libthpfs.so.$(SOMAJOR) $(DESTDIR)$(LIBDIR)/libthpfs.so.$(VERSION) \
		$(DESTDIR)$(LIBDIR)/pkgconfig/thpfs.pc $(DESTDIR)$(INCLUDEDIR)/thpfs.h \
		$(addprefix $(DESTDIR)$(BINDIR)/,$(INSTALL_PROGS)) \
		$(addprefix $(DESTDIR)$(MANDIR)/man1/,$(notdir $(INSTALL_MAN1))) \
		$(addprefix $(DESTDIR)$(MANDIR)/man8/,$(notdir $(INSTALL_MAN8)))
	@if [ -e '$(HELPER)' ]; then \
		if grep -qx '$(HELPER_LINE)' '$(HELPER)'; then \
			rm -f '$(HELPER)'; \
		else \
			echo "make uninstall: $(HELPER) belongs to another install" \
				"($$(sed -n 's/^THPFS=//p' '$(HELPER)' | head -1)): left" >&2; \
		fi; \
	fi

test-install: lib tools
	tests/install/run.sh
