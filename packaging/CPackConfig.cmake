# Install rules for everything besides the binaries, and CPack settings for the dpsd .deb and
# .rpm. Included at the end of the top-level CMakeLists.txt; `cpack -G "DEB;RPM"` in the build
# directory makes both packages from the same file list (see tests/stages/40-packages.sh).
#
# The system directories come from pkg-config systemd, so the packages follow the distribution
# they are built on (Debian 12: /lib/systemd/system, /usr/lib/sysusers.d, /usr/lib/tmpfiles.d).

set(_pkg_dir ${CMAKE_CURRENT_LIST_DIR})

pkg_get_variable(DPSD_SYSTEMD_UNIT_DIR systemd systemdsystemunitdir)
pkg_get_variable(DPSD_SYSUSERS_DIR systemd sysusersdir)
pkg_get_variable(DPSD_TMPFILES_DIR systemd tmpfilesdir)
pkg_get_variable(DPSD_CATALOG_DIR systemd catalogdir)
foreach(_v DPSD_SYSTEMD_UNIT_DIR DPSD_SYSUSERS_DIR DPSD_TMPFILES_DIR DPSD_CATALOG_DIR)
  if(NOT ${_v})
    message(FATAL_ERROR "${_v}: pkg-config systemd does not say (install systemd-dev/systemd)")
  endif()
endforeach()

# Packages need 0755 directories whatever the builder's umask is.
set(CMAKE_INSTALL_DEFAULT_DIRECTORY_PERMISSIONS
    OWNER_READ OWNER_WRITE OWNER_EXECUTE GROUP_READ GROUP_EXECUTE WORLD_READ WORLD_EXECUTE)

install(FILES
    ${PROJECT_SOURCE_DIR}/systemd/dpsd.service
    ${PROJECT_SOURCE_DIR}/systemd/dps-provisioned.target
    ${PROJECT_SOURCE_DIR}/systemd/dpsd-wait-provisioned.service
  DESTINATION ${DPSD_SYSTEMD_UNIT_DIR})
install(FILES ${PROJECT_SOURCE_DIR}/systemd/dpsd.sysusers
  DESTINATION ${DPSD_SYSUSERS_DIR} RENAME dpsd.conf)
install(FILES ${PROJECT_SOURCE_DIR}/systemd/dpsd.tmpfiles
  DESTINATION ${DPSD_TMPFILES_DIR} RENAME dpsd.conf)
# The journal catalog: what `journalctl -x` says about each of dpsd's MESSAGE_IDs.
install(FILES ${PROJECT_SOURCE_DIR}/systemd/dpsd.catalog DESTINATION ${DPSD_CATALOG_DIR})
if(EXISTS ${PROJECT_SOURCE_DIR}/dbus/io.dpsd.Provisioning1.conf)
  install(FILES ${PROJECT_SOURCE_DIR}/dbus/io.dpsd.Provisioning1.conf
    DESTINATION ${CMAKE_INSTALL_DATAROOTDIR}/dbus-1/system.d)
endif()
if(EXISTS ${PROJECT_SOURCE_DIR}/dbus/io.dpsd.Provisioning1.xml)
  install(FILES ${PROJECT_SOURCE_DIR}/dbus/io.dpsd.Provisioning1.xml
    DESTINATION ${CMAKE_INSTALL_DATAROOTDIR}/dbus-1/interfaces)
endif()
# The conffile: absolute destination, so it is /etc whatever the prefix is.
install(FILES ${PROJECT_SOURCE_DIR}/etc/dpsd/config.toml DESTINATION /etc/dpsd)

# Documentation, compressed as Debian policy asks (gzip -9n: no name, no time stamp, so the
# packages are reproducible).
find_program(DPSD_GZIP gzip REQUIRED)
set(_doc_out ${CMAKE_BINARY_DIR}/packaging)
set(_gz_outputs)
foreach(_src IN ITEMS man/dpsd.8 man/dpsctl.1 man/dpsd.toml.5 changelog)
  get_filename_component(_name ${_src} NAME)
  if(_name STREQUAL "changelog")
    set(_out ${_doc_out}/changelog.Debian.gz)
  else()
    set(_out ${_doc_out}/${_name}.gz)
  endif()
  add_custom_command(OUTPUT ${_out}
    COMMAND ${CMAKE_COMMAND} -E make_directory ${_doc_out}
    COMMAND ${DPSD_GZIP} -9n -c ${_pkg_dir}/${_src} > ${_out}
    DEPENDS ${_pkg_dir}/${_src} VERBATIM)
  list(APPEND _gz_outputs ${_out})
endforeach()
add_custom_target(dpsd-docs ALL DEPENDS ${_gz_outputs})
install(FILES ${_doc_out}/dpsd.8.gz DESTINATION ${CMAKE_INSTALL_MANDIR}/man8)
install(FILES ${_doc_out}/dpsd.toml.5.gz DESTINATION ${CMAKE_INSTALL_MANDIR}/man5)
install(FILES ${_doc_out}/changelog.Debian.gz ${_pkg_dir}/copyright
  DESTINATION ${CMAKE_INSTALL_DOCDIR})
# The consumer unit README and dpsd(8) point to: what operators copy for their own service.
install(FILES ${PROJECT_SOURCE_DIR}/systemd/examples/iothub-consumer.service
  DESTINATION ${CMAKE_INSTALL_DOCDIR}/examples)
if(TARGET dpsctl)
  install(FILES ${_doc_out}/dpsctl.1.gz DESTINATION ${CMAKE_INSTALL_MANDIR}/man1)
endif()

# ---- CPack ------------------------------------------------------------------------------------
set(CPACK_GENERATOR "DEB;RPM")
set(CPACK_PACKAGE_NAME dpsd)
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGE_VENDOR "dpsd")
set(CPACK_PACKAGE_CONTACT "dpsd maintainers <maintainers@dpsd.io>")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "Azure IoT Hub Device Provisioning Service daemon")
set(CPACK_PACKAGE_DESCRIPTION
"dpsd provisions a Linux gateway with the Azure IoT Hub Device Provisioning
Service (DPS) over MQTT on TLS (or MQTT over WebSocket), attesting with a
symmetric key from a file or a systemd credential, or with an X.509
certificate whose private key is in a file or stays in a PKCS#11 token
(TPM, HSM, smart card; with libengine-pkcs11-openssl). It retries with
backoff instead of exiting, serves a cached assignment at boot, and
publishes the assigned IoT Hub in /run/dpsd/iothub.env and on D-Bus
(io.dpsd.Provisioning1). Services that need the identity order themselves
after dps-provisioned.target.")
set(CPACK_PACKAGE_HOMEPAGE_URL "https://github.com/dpsd/dpsd")
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_STRIP_FILES ON)
set(CPACK_SET_DESTDIR OFF)

# Debian: dpkg-shlibdeps finds the library dependencies; the release makes the version
# 0.1.0-1, matching packaging/changelog.
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_RELEASE 1)
set(CPACK_DEBIAN_PACKAGE_SECTION admin)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
# ca-certificates: the default trust bundle is the OS store (/etc/ssl/certs/ca-certificates.crt);
# without it the first TLS handshake with DPS fails with "certificate verify failed" (issue 11).
set(CPACK_DEBIAN_PACKAGE_DEPENDS "systemd, dbus, ca-certificates")
# A private key in a PKCS#11 token ([pkcs11] in dpsd.toml(5)) goes through this OpenSSL engine.
set(CPACK_DEBIAN_PACKAGE_SUGGESTS "libengine-pkcs11-openssl")
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION ON)
# lintian reads overrides from the package itself; the RPM leaves the file out (%exclude below).
install(FILES ${_pkg_dir}/deb/lintian-overrides
  DESTINATION ${CMAKE_INSTALL_DATAROOTDIR}/lintian/overrides RENAME dpsd)
set(CPACK_DEBIAN_PACKAGE_CONTROL_EXTRA
  ${_pkg_dir}/deb/conffiles ${_pkg_dir}/deb/postinst ${_pkg_dir}/deb/prerm ${_pkg_dir}/deb/postrm)

# RPM: the same files and the same script logic (packaging/rpm/*). System directories are
# owned by other packages, so they stay out of the file list.
set(CPACK_RPM_FILE_NAME RPM-DEFAULT)
set(CPACK_RPM_PACKAGE_RELEASE 1)
set(CPACK_RPM_PACKAGE_LICENSE "MIT")
set(CPACK_RPM_PACKAGE_GROUP "System Environment/Daemons")
set(CPACK_RPM_PACKAGE_URL ${CPACK_PACKAGE_HOMEPAGE_URL})
set(CPACK_RPM_PACKAGE_REQUIRES "systemd, dbus, ca-certificates")
set(CPACK_RPM_PACKAGE_SUGGESTS "openssl-pkcs11")
set(CPACK_RPM_SPEC_MORE_DEFINE "%define _build_id_links none\n%define debug_package %{nil}")
set(CPACK_RPM_USER_FILELIST
  "%config(noreplace) /etc/dpsd/config.toml"
  "%exclude /usr/share/lintian/overrides/dpsd")
set(CPACK_RPM_EXCLUDE_FROM_AUTO_FILELIST_ADDITION
  /etc /lib /lib/systemd ${DPSD_SYSTEMD_UNIT_DIR} /usr/lib /usr/lib/systemd /usr/bin /usr/sbin
  ${DPSD_SYSUSERS_DIR} ${DPSD_TMPFILES_DIR} ${DPSD_CATALOG_DIR}
  /usr/share/dbus-1 /usr/share/dbus-1/system.d /usr/share/dbus-1/interfaces
  /usr/share/man /usr/share/man/man1 /usr/share/man/man5 /usr/share/man/man8
  /usr/share/doc /usr/share/lintian /usr/share/lintian/overrides)
set(CPACK_RPM_POST_INSTALL_SCRIPT_FILE ${_pkg_dir}/rpm/post)
set(CPACK_RPM_PRE_UNINSTALL_SCRIPT_FILE ${_pkg_dir}/rpm/preun)
set(CPACK_RPM_POST_UNINSTALL_SCRIPT_FILE ${_pkg_dir}/rpm/postun)

include(CPack)
