/*
 * notify.h - tells systemd (Type=notify) when fulcrum is ready, reloading or stopping.
 *
 * The protocol is a datagram to the Unix socket named by $NOTIFY_SOCKET; without that variable
 * every call does nothing, so fulcrum behaves the same under any other supervisor.
 */
#ifndef FULCRUM_NOTIFY_H
#define FULCRUM_NOTIFY_H

/* Sends one state line, such as "READY=1" or "STOPPING=1". */
void notify_send(const char *state);

#endif
