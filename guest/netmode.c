#include "cmdline.h"
#include "console.h"
#include "lib.h"
#include "netmode.h"

#define LINK_TIMEOUT_MS 10000

enum guest_status net_mode_start(struct net_dev *dev, struct net_host *host, bool ip_required)
{
	struct pci_device pci;
	uint64_t nic;
	bool has_ip;
	char mac[18], ip[16] = "-";

	memset(host, 0, sizeof(*host));
	host->dev = dev;
	if (!cmdline_u64("nic", 0, &nic) || !cmdline_ipv4("ip", &host->ip, &has_ip))
		return STATUS_BAD_CMDLINE;
	if (ip_required && !has_ip) {
		console_write("VDFS-GUEST ERROR this mode needs ip=\n");
		return STATUS_BAD_CMDLINE;
	}
	if (!net_find((unsigned)nic, &pci)) {
		console_printf("VDFS-GUEST ERROR no virtio-net device number %lu on PCI bus 0\n", nic);
		return STATUS_NO_DEVICE;
	}
	if (!net_open(dev, &pci))
		return STATUS_NO_DEVICE;
	if (!net_wait_link(dev, LINK_TIMEOUT_MS)) {
		console_write("VDFS-GUEST ERROR virtio-net link stayed down (no switch port?)\n");
		return STATUS_NO_DEVICE;
	}
	format_mac(mac, dev->mac);
	if (has_ip)
		format_ipv4(ip, host->ip);
	console_printf("RESULT nic=ready mac=%s ip=%s queue_size=%u\n", mac, ip, dev->rx.size);
	return STATUS_PASS;
}
