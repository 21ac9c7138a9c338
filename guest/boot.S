/*
 * PVH entry, long-mode switch and the drop to ring 3.
 *
 * Guest ring 0 is run by KVM's instruction emulator on the target machines
 * (~1.5M instructions/s), so everything ring 0 needs is laid out at link time:
 * page tables, GDT, TSS and IDT are static data (see guest.ld for the symbols
 * that pack addresses into descriptors).  The ring-0 path below is about
 * thirty instructions; everything else runs in ring 3 with IOPL 3.
 */

#define XEN_ELFNOTE_PHYS32_ENTRY 18
#define MSR_EFER 0xc0000080
#define EFER_LME 0x100
#define CR0_PE 0x1
#define CR0_WP 0x10000
#define CR0_PG 0x80000000
#define CR4_PAE 0x20

#define SEL_KERNEL_CODE 0x08
#define SEL_KERNEL_DATA 0x10
#define SEL_USER_DATA (0x18 | 3)
#define SEL_USER_CODE (0x20 | 3)
#define SEL_TSS 0x28

/* RFLAGS for ring 3: IOPL=3 (bits 12-13), reserved bit 1, interrupts off. */
#define USER_RFLAGS 0x3002

/* Page-directory entry bits: present, writable, user, 2 MiB page. */
#define PDE_RAM 0x87
/* ... plus write-through and cache-disable for the MMIO hole. */
#define PDE_MMIO 0x9f

/* The PVH entry point, found by loaders in a PT_NOTE segment. */
	.section .note.pvh, "a"
	.p2align 2
	.long 4                 /* name size: "Xen\0" */
	.long 8                 /* descriptor size (64-bit, as Linux does) */
	.long XEN_ELFNOTE_PHYS32_ENTRY
	.asciz "Xen"
	.p2align 2
	.quad pvh_entry

	.section .text.boot, "ax"
	.code32
	.globl pvh_entry
pvh_entry:
	/* PVH: 32-bit flat protected mode, paging off, EBX = hvm_start_info. */
	movl %ebx, %edi
	lgdt gdt_pointer
	movl %cr4, %eax
	orl $CR4_PAE, %eax
	movl %eax, %cr4
	movl $pml4, %eax
	movl %eax, %cr3
	movl $MSR_EFER, %ecx
	rdmsr
	orl $EFER_LME, %eax
	wrmsr
	movl %cr0, %eax
	orl $(CR0_PG | CR0_WP | CR0_PE), %eax
	movl %eax, %cr0
	ljmp $SEL_KERNEL_CODE, $long_mode_entry

	.code64
long_mode_entry:
	movl $SEL_KERNEL_DATA, %eax
	movl %eax, %ds
	movl %eax, %es
	movl %eax, %ss
	xorl %eax, %eax
	movl %eax, %fs
	movl %eax, %gs
	movl %edi, %edi         /* zero-extend the start-info address */
	movq $kernel_stack_top, %rsp
	movl $SEL_TSS, %eax
	ltr %ax
	lidt idt_pointer
	/* IOPL is also set here: the emulated iretq on the target machines does
	 * not take it from the frame. */
	pushq $USER_RFLAGS
	popfq
	pushq $SEL_USER_DATA
	pushq $user_stack_top
	pushq $USER_RFLAGS
	pushq $SEL_USER_CODE
	pushq $user_entry
	iretq

/* Ring 3 from here on: native speed. */
user_entry:
	movq %rdi, %rbx
	movq $__bss_start, %rdi
	movq $__bss_end, %rcx
	subq %rdi, %rcx
	xorl %eax, %eax
	cld
	rep stosb
	movq %rbx, %rdi
	call guest_main
	ud2

/*
 * Exception stubs, 16 bytes apart so that guest.ld can compute every IDT
 * entry from the address of the first.  Each pushes an error code (the CPU's
 * or 0) and the vector, then joins fault_common.
 */
	.p2align 10
	.globl exception_stubs
exception_stubs:
	.set vector, 0
	.rept 32
	.p2align 4
	.if (vector == 8) || (vector >= 10 && vector <= 14) || (vector == 17) || (vector == 21) || (vector == 29) || (vector == 30)
	nop; nop
	.else
	pushq $0
	.endif
	pushq $vector
	jmp fault_common
	.set vector, vector + 1
	.endr
	.org exception_stubs + 32 * 16  /* fails to assemble if a stub outgrew 16 bytes */

/*
 * Ring 3 halts by executing hlt at guest_halt: the #GP lands here and ring 0
 * halts for good.  (A software interrupt gate would be the textbook way, but
 * the target machines' KVM raises #UD for int n from ring 3.)
 */
	.globl guest_halt
guest_halt:
	hlt
	jmp guest_halt

fault_common:
	/* Stack: vector, error code, RIP, CS, RFLAGS, RSP, SS. */
	cmpq $guest_halt, 16(%rsp)
	je 2f
	movq 0(%rsp), %rdi
	movq 8(%rsp), %rsi
	movq 16(%rsp), %rdx
	movq %cr2, %rcx
	movq 32(%rsp), %r8
	movq 24(%rsp), %r9
	andq $-16, %rsp
	call report_fault
	cli
2:	hlt
	jmp 2b

	.section .data.boot, "aw"
	.p2align 4
gdt:
	.quad 0
	.quad 0x00af9a000000ffff        /* 0x08 kernel code, 64-bit */
	.quad 0x00cf92000000ffff        /* 0x10 kernel data */
	.quad 0x00cff2000000ffff        /* 0x18 user data, DPL 3 */
	.quad 0x00affa000000ffff        /* 0x20 user code, 64-bit, DPL 3 */
	.quad TSS_DESCRIPTOR_LOW        /* 0x28 TSS (guest.ld) */
	.quad 0
gdt_end:

	.p2align 3
	.word 0
gdt_pointer:
	.word gdt_end - gdt - 1
	.quad gdt

	.p2align 3
	.word 0
idt_pointer:
	.word idt_end - idt - 1
	.quad idt

	.p2align 4
	.globl tss
tss:
	.long 0
	.quad kernel_stack_top          /* RSP0: stack for faults taken in ring 3 */
	.fill 23, 4, 0
	.word 0
	.word io_bitmap - tss
	/* All ports open to ring 3.  IOPL 3 alone should do, but the target
	 * machines' KVM drops IOPL from RFLAGS, so the bitmap grants them. */
io_bitmap:
	.fill 8192, 1, 0
	.byte 0xff
	.globl tss_end
tss_end:

	.p2align 4
idt:
	.set vector, 0
	.rept 32
	.quad IDT_STUB_LOW + vector * 16
	.quad 0
	.set vector, vector + 1
	.endr
idt_end:

/* Identity map of the low 4 GiB with 2 MiB pages, all user-accessible. */
	.section .data.pagetables, "aw"
	.p2align 12
pml4:
	.quad pdpt + 0x7
	.fill 511, 8, 0
pdpt:
	.quad page_directories + 0x0000 + 0x7
	.quad page_directories + 0x1000 + 0x7
	.quad page_directories + 0x2000 + 0x7
	.quad page_directories + 0x3000 + 0x7
	.fill 508, 8, 0
page_directories:
	.set page, 0
	.rept 1536                      /* 0 - 3 GiB: RAM and whatever the VMM puts there */
	.quad (page << 21) | PDE_RAM
	.set page, page + 1
	.endr
	.rept 512                       /* 3 - 4 GiB: PCI hole, ECAM, APIC: uncached */
	.quad (page << 21) | PDE_MMIO
	.set page, page + 1
	.endr

	.section .stack, "aw", @nobits
	.p2align 12
	.space 8192
kernel_stack_top:
	.space 65536
user_stack_top:
