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
# mount(8) looks for helpers in /sbin only, so the helper goes to
# MOUNT_HELPER_DIR (default /sbin) whatever PREFIX is; it runs
# $(PREFIX)/bin/thpfs.
BINDIR ?= $(PREFIX)/bin
LIBDIR ?= $(PREFIX)/lib
INCLUDEDIR ?= $(PREFIX)/include
MANDIR ?= $(PREFIX)/share/man
MOUNT_HELPER_DIR ?= /sbin
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
	sed -e 's|@BINDIR@|$(BINDIR)|' tools/mount.fuse.thpfs.in > $(DESTDIR)$(MOUNT_HELPER_DIR)/mount.fuse.thpfs
	chmod 755 $(DESTDIR)$(MOUNT_HELPER_DIR)/mount.fuse.thpfs
	install -m 644 $(INSTALL_MAN1) $(DESTDIR)$(MANDIR)/man1/
	install -m 644 $(INSTALL_MAN8) $(DESTDIR)$(MANDIR)/man8/
	@echo "installed in $(DESTDIR)$(PREFIX); if $(LIBDIR) is not in the loader's path," \
		"run ldconfig or link with -Wl,-rpath,$(LIBDIR) (README: Install)"

uninstall:
	rm -f $(DESTDIR)$(LIBDIR)/libthpfs.a $(DESTDIR)$(LIBDIR)/libthpfs.so \
		$(DESTDIR)$(LIBDIR)/libthpfs.so.$(SOMAJOR) $(DESTDIR)$(LIBDIR)/libthpfs.so.$(VERSION) \
		$(DESTDIR)$(LIBDIR)/pkgconfig/thpfs.pc $(DESTDIR)$(INCLUDEDIR)/thpfs.h \
		$(addprefix $(DESTDIR)$(BINDIR)/,$(INSTALL_PROGS)) \
		$(DESTDIR)$(MOUNT_HELPER_DIR)/mount.fuse.thpfs \
		$(addprefix $(DESTDIR)$(MANDIR)/man1/,$(notdir $(INSTALL_MAN1))) \
		$(addprefix $(DESTDIR)$(MANDIR)/man8/,$(notdir $(INSTALL_MAN8)))

test-install: lib tools
	tests/install/run.sh
