/* Writes a minimal PVH ELF for vdfs-vm tests: 32-bit protected-mode code at
 * 1 MiB that prints a line on COM1 and then does one thing, chosen by name.
 * The machine code is hand-assembled (encodings per the Intel SDM) so the
 * tests need no cross toolchain.
 *
 * usage: mkpvh OUTPUT ACTION
 *   exit:N     print "MKPVH HELLO", write N to the debug-exit port 0xf4
 *   badinsn    print, then execute xrstor, which KVM's emulator lacks
 *   triple     print, then ud2 with an empty IDT: triple fault
 *   reset      print, then i8042 reset command 0xfe on port 0x64
 *   poweroff   print, then ACPI S5 (SLP_TYP 5 | SLP_EN) on PM1a_CNT 0x604
 *   spin       print, then loop forever (signal handling tests)
 *   idle       print, then halt with interrupts off (an idle VM, for RSS)
 *   echo       print, then echo console input (polling LSR) up to a newline,
 *              then exit with status 33
 *   nonote:N   like exit:N but without the PVH entry note */
#include <elf.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LOAD_ADDR 0x100000u
#define CODE_OFFSET 0x1000u
#define IMAGE_SIZE 0x200u
#define MSG_OFFSET 0x100u

static size_t emit(unsigned char *code, size_t at, const unsigned char *bytes, size_t n)
{
    memcpy(code + at, bytes, n);
    return at + n;
}

static size_t emit_print(unsigned char *code, size_t at)
{
    uint32_t msg = LOAD_ADDR + MSG_OFFSET;
    unsigned char mov_esi[5] = { 0xbe, (unsigned char)msg, (unsigned char)(msg >> 8),
                                 (unsigned char)(msg >> 16), (unsigned char)(msg >> 24) };
    at = emit(code, at, mov_esi, sizeof(mov_esi));
    static const unsigned char loop[] = {
        0x66, 0xba, 0xf8, 0x03, /* mov dx, 0x3f8 */
        0xac,                   /* 1: lodsb */
        0x84, 0xc0,             /* test al, al */
        0x74, 0x03,             /* jz 2f */
        0xee,                   /* out dx, al */
        0xeb, 0xf8,             /* jmp 1b */
    };
    return emit(code, at, loop, sizeof(loop));
}

static const unsigned char halt_forever[] = { 0xf4, 0xeb, 0xfd }; /* hlt; jmp hlt */

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: %s OUTPUT exit:N|badinsn|triple|reset|poweroff|spin|idle|echo|nonote:N\n",
                argv[0]);
        return 2;
    }
    const char *action = argv[2];
    unsigned char code[IMAGE_SIZE];
    memset(code, 0x90, sizeof(code));
    size_t at = emit_print(code, 0);
    int with_note = 1;
    if (strncmp(action, "exit:", 5) == 0 || strncmp(action, "nonote:", 7) == 0) {
        with_note = action[0] == 'e';
        int status = atoi(strchr(action, ':') + 1);
        unsigned char out[] = { 0xb0, (unsigned char)status, 0xe6, 0xf4 }; /* mov al,N; out 0xf4,al */
        at = emit(code, at, out, sizeof(out));
    } else if (strcmp(action, "badinsn") == 0) {
        /* xrstor [0x100180]: 0f ae /5 with a disp32 operand */
        static const unsigned char xrstor[] = { 0x0f, 0xae, 0x2d, 0x80, 0x01, 0x10, 0x00 };
        at = emit(code, at, xrstor, sizeof(xrstor));
    } else if (strcmp(action, "triple") == 0) {
        static const unsigned char ud2[] = { 0x0f, 0x0b };
        at = emit(code, at, ud2, sizeof(ud2));
    } else if (strcmp(action, "reset") == 0) {
        static const unsigned char reset[] = { 0xb0, 0xfe, 0xe6, 0x64 }; /* mov al,0xfe; out 0x64,al */
        at = emit(code, at, reset, sizeof(reset));
    } else if (strcmp(action, "poweroff") == 0) {
        static const unsigned char s5[] = {
            0x66, 0xb8, 0x00, 0x34, /* mov ax, (5 << 10) | (1 << 13) */
            0x66, 0xba, 0x04, 0x06, /* mov dx, 0x604 */
            0x66, 0xef,             /* out dx, ax */
        };
        at = emit(code, at, s5, sizeof(s5));
    } else if (strcmp(action, "spin") == 0) {
        static const unsigned char spin[] = { 0xeb, 0xfe }; /* jmp . */
        at = emit(code, at, spin, sizeof(spin));
    } else if (strcmp(action, "echo") == 0) {
        static const unsigned char echo[] = {
            0x66, 0xba, 0xfd, 0x03, /* 1: mov dx, 0x3fd (LSR) */
            0xec,                   /* 2: in al, dx */
            0xa8, 0x01,             /* test al, 1 (data ready) */
            0x74, 0xfb,             /* jz 2b */
            0x66, 0xba, 0xf8, 0x03, /* mov dx, 0x3f8 */
            0xec,                   /* in al, dx (RBR) */
            0xee,                   /* out dx, al (THR) */
            0x3c, 0x0a,             /* cmp al, '\n' */
            0x75, 0xed,             /* jne 1b */
            0xb0, 0x21, 0xe6, 0xf4, /* mov al, 33; out 0xf4, al */
        };
        at = emit(code, at, echo, sizeof(echo));
    } else if (strcmp(action, "idle") == 0) {
        /* falls through to the halt loop; IF is clear at the PVH entry */
    } else {
        fprintf(stderr, "mkpvh: unknown action '%s'\n", action);
        return 2;
    }
    emit(code, at, halt_forever, sizeof(halt_forever));
    static const char msg[] = "MKPVH HELLO\n";
    memcpy(code + MSG_OFFSET, msg, sizeof(msg));

    struct {
        Elf64_Nhdr nh;
        char name[4];
        uint32_t entry;
    } note = { { 4, 4, 18 /* XEN_ELFNOTE_PHYS32_ENTRY */ }, "Xen", LOAD_ADDR };

    Elf64_Ehdr eh = { 0 };
    memcpy(eh.e_ident, ELFMAG, SELFMAG);
    eh.e_ident[EI_CLASS] = ELFCLASS64;
    eh.e_ident[EI_DATA] = ELFDATA2LSB;
    eh.e_ident[EI_VERSION] = EV_CURRENT;
    eh.e_type = ET_EXEC;
    eh.e_machine = EM_X86_64;
    eh.e_version = EV_CURRENT;
    eh.e_entry = LOAD_ADDR;
    eh.e_phoff = sizeof(eh);
    eh.e_ehsize = sizeof(eh);
    eh.e_phentsize = sizeof(Elf64_Phdr);
    eh.e_phnum = 2;
    Elf64_Phdr ph[2] = { 0 };
    ph[0].p_type = PT_LOAD;
    ph[0].p_flags = PF_R | PF_W | PF_X;
    ph[0].p_offset = CODE_OFFSET;
    ph[0].p_vaddr = ph[0].p_paddr = LOAD_ADDR;
    ph[0].p_filesz = ph[0].p_memsz = IMAGE_SIZE;
    ph[0].p_align = 0x1000;
    ph[1].p_type = with_note ? PT_NOTE : PT_NULL;
    ph[1].p_offset = sizeof(eh) + sizeof(ph);
    ph[1].p_filesz = sizeof(note);
    ph[1].p_align = 4;

    FILE *f = fopen(argv[1], "wb");
    if (!f) {
        perror(argv[1]);
        return 1;
    }
    unsigned char file[CODE_OFFSET + IMAGE_SIZE];
    memset(file, 0, sizeof(file));
    memcpy(file, &eh, sizeof(eh));
    memcpy(file + sizeof(eh), ph, sizeof(ph));
    memcpy(file + sizeof(eh) + sizeof(ph), &note, sizeof(note));
    memcpy(file + CODE_OFFSET, code, sizeof(code));
    if (fwrite(file, sizeof(file), 1, f) != 1 || fclose(f) != 0) {
        perror(argv[1]);
        return 1;
    }
    return 0;
}
